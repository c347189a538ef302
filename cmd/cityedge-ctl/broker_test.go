package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cityedge/cityedge/scripts/testbroker"
)

// TestRoundTrip runs the tool against a real mosquitto with client
// certificates; a stand-in gateway checks the signature and answers. The
// real agent's round trip belongs to the agent's tests.
func TestRoundTrip(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	dir := t.TempDir()
	var out bytes.Buffer
	if code := run(context.Background(), []string{"keygen", "--out", filepath.Join(dir, "ops")}, &out, &out); code != 0 {
		t.Fatal(out.String())
	}
	priv, err := loadSigningKey(filepath.Join(dir, "ops.key"))
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.Public().(ed25519.PublicKey)

	gw := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL).SetClientID("gw-stand-in").
		SetTLSConfig(b.ClientTLS(t)).SetAutoReconnect(false))
	if tok := gw.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("stand-in connect: %v", tok.Error())
	}
	defer gw.Disconnect(100)
	seen := make(chan payload, 4)
	answerOK := true
	sub := gw.Subscribe("cityedge/gw-0042/cmd", 1, func(c mqtt.Client, m mqtt.Message) {
		p := strings.Split(string(m.Payload()), ".")
		sig, _ := base64.RawURLEncoding.DecodeString(p[len(p)-1])
		body, _ := base64.RawURLEncoding.DecodeString(p[1])
		var pl payload
		json.Unmarshal(body, &pl)
		ok := len(p) == 3 && ed25519.Verify(pub, []byte(p[0]+"."+p[1]), sig) && answerOK
		res, _ := json.Marshal(map[string]any{"jti": pl.JTI, "cmd": pl.Cmd, "ok": ok, "result": map[string]string{"state": "online"},
			"time": time.Now().UTC().Format(time.RFC3339)})
		c.Publish("cityedge/gw-0042/cmd/result", 1, false, []byte(`{"jti":"someone else's","ok":true}`))
		c.Publish("cityedge/gw-0042/cmd/result", 1, false, res)
		seen <- pl
	})
	if !sub.WaitTimeout(30*time.Second) || sub.Error() != nil {
		t.Fatalf("stand-in subscribe: %v", sub.Error())
	}

	args := []string{"--key", filepath.Join(dir, "ops.key"), "--broker", b.URL, "--ca", b.PKI.CA.CertFile,
		"--cert", b.PKI.Client.CertFile, "--key-file", b.PKI.Client.KeyFile, "--timeout", "20s", "gw-0042", "status"}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d\nstdout %s\nstderr %s\nbroker log %s", code, stdout.String(), stderr.String(), b.Log())
	}
	pl := <-seen
	if pl.Agent != "gw-0042" || pl.Cmd != "status" || pl.EXP-pl.IAT != int64(defaultTTL/time.Second) || len(pl.JTI) != 32 {
		t.Fatalf("payload %+v", pl)
	}
	var res map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || res["jti"] != pl.JTI || res["ok"] != true {
		t.Fatalf("printed %s (%v)", stdout.String(), err)
	}

	// ok false → exit 1.
	answerOK = false
	stdout.Reset()
	if code := run(context.Background(), args, &stdout, &stderr); code != exitFailed || !strings.Contains(stdout.String(), `"ok": false`) {
		t.Fatalf("failed command: exit %d, %s", code, stdout.String())
	}
	<-seen
	// No answer → exit 1 after --timeout.
	args[len(args)-2] = "gw-0099"
	args[len(args)-3] = "1s"
	stderr.Reset()
	if code := run(context.Background(), args, &stdout, &stderr); code != exitFailed || !strings.Contains(stderr.String(), "no answer") {
		t.Fatalf("no answer: exit %d, %s", code, stderr.String())
	}
}
