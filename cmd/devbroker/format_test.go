package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// TestFormatPackPrecision: the demo screen shows a value as the agent sent
// it (101322.55 Pa), not rounded to six digits.
func TestFormatPackPrecision(t *testing.T) {
	out := formatPack("t", []byte(`[{"bn":"gw/","bt":1764064800,"n":"air-1/pressure","u":"Pa","v":101322.55,"seq":1}]`))
	if !strings.Contains(out, "101322.55 Pa") {
		t.Errorf("formatPack = %q", out)
	}
}

// TestDisconnectWithoutError: a clean disconnect prints no "(<nil>)".
func TestDisconnectWithoutError(t *testing.T) {
	var b bytes.Buffer
	p := &printer{out: &b}
	cl := &mqtt.Client{ID: "gw-demo"}
	p.OnDisconnect(cl, nil, false)
	p.OnDisconnect(cl, errors.New("EOF"), false)
	if got := b.String(); got != "client gw-demo disconnected\nclient gw-demo disconnected (EOF)\n" {
		t.Errorf("printed %q", got)
	}
}
