package uplink

// PublishStatus publishes the retained status message (Config.Status(true))
// now rather than at the next StatusEvery tick, when a session is up; when
// none is, the next session publishes it on connect anyway. A request while
// the previous status still awaits its PUBACK is folded into that one.
func (c *Client) PublishStatus() {
	select {
	case c.statusNow <- struct{}{}:
	default:
	}
}
