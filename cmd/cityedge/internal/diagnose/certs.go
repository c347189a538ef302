package diagnose

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/cityedge/cityedge/certs"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/uplink"
	"golang.org/x/sys/unix"
)

// serviceUID is the user the service runs as: the owner of agent.state_dir,
// which the package and the install script create for it. nil when the
// directory does not exist (a first start by hand): the key is then judged
// for the user running --diagnose.
func serviceUID(cfg *config.Config) *int {
	var st unix.Stat_t
	if err := unix.Stat(cfg.Agent.StateDir, &st); err != nil {
		return nil
	}
	uid := int(st.Uid)
	return &uid
}

// diagnoseCerts judges the TLS material as the service would: ownership and
// modes against the service's user (certs.Options.ServiceUID), the files
// read with this process's rights (as root, all of them), so that a
// technician's sudo run never FAILs a correct installation or advises a
// change that would lock the service out. With a usable set it checks every
// broker; a run that cannot read the key (neither root nor the service user)
// WARNs, and every other check still runs.
//
// A Sentilo-only gateway (no uplink.brokers) has no MQTT output: that is
// said, not failed, and [sentilo]'s TLS material is checked with Sentilo
// (sentilo.go).
func diagnoseCerts(ctx context.Context, cfg *config.Config, r *report) {
	if !cfg.MQTT() {
		r.add("uplink", "brokers", Pass, "no MQTT output configured (no uplink.brokers): Sentilo is the only output")
		if cfg.Remote.Enabled {
			r.add("remote", "commands", Warn, "remote.enabled is set, but remote commands travel over MQTT: not available without uplink.brokers")
		}
		return
	}
	opts := cfg.CertOptions(slog.New(slog.DiscardHandler))
	opts.ServiceUID = serviceUID(cfg)
	store, err := certs.Open(opts)
	if err != nil {
		r.add("certs", "load", Fail, "%v", err)
		return
	}
	st := store.Status()
	if st.Unusable {
		_, why := store.TLSConfig()
		v, skip := Fail, "no usable TLS material (see certs)"
		if errors.Is(why, fs.ErrPermission) && os.Geteuid() != 0 && (opts.ServiceUID == nil || *opts.ServiceUID != os.Geteuid()) {
			// Not a fault of the gateway: this user may not read the key.
			v, skip = Warn, "the key cannot be read by this user: run as root or as the service user"
		}
		r.add("certs", "client", v, "%s", st.Warning)
		for _, b := range cfg.Uplink.Brokers {
			r.add("broker", b, Warn, "not checked: %s", skip)
		}
		return
	}
	v := Pass
	switch {
	case st.Expired:
		v = Fail
	case st.Warning != "" || st.LastReloadError != "":
		v = Warn
	}
	r.add("certs", "client", v, "%s (serial %s): %s left, CA %s left%s", st.ClientSubject, st.ClientSerial,
		plural(st.ClientDaysLeft, "day"), plural(st.CADaysLeft, "day"), suffix("; ", st.Warning))
	for _, b := range cfg.Uplink.Brokers {
		r.async(ctx, &r.wg, "broker", b, checkTimeout, func(ctx context.Context) (string, string) { return diagnoseBroker(ctx, cfg, store, b) })
	}
}

// echoVerdict turns the round trip's error into a verdict and a note.
func echoVerdict(topic string, err error, wait time.Duration) (string, string) {
	switch {
	case err == nil:
		return Pass, "; test message on " + topic + " delivered back"
	case errors.Is(err, uplink.ErrNotDelivered):
		return Fail, fmt.Sprintf("; the broker accepted but did not deliver: check its ACL (a test message on %s was acknowledged "+
			"but not delivered back within %v). The gateway must be allowed to write its topic prefix: MQTT 3.1.1 acknowledges a "+
			"publish the ACL denies, so readings would be lost silently. For this check it must also be allowed to read %s/#",
			topic, wait, topic[:strings.LastIndex(topic, "/")])
	case errors.Is(err, uplink.ErrSubscribeRefused):
		return Warn, "; delivery not checked: the broker does not let the gateway read " + topic + " (allow <topic_prefix>/diagnose/# to check it)"
	}
	return Fail, "; test message: " + err.Error()
}
