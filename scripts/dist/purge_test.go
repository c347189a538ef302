package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPurgeGroups runs postrm purge on a scratch root: of the groups
// postinst recorded as created, one nobody else is in goes; one with a
// member or serving as a user's primary group stays; a group postinst did
// not create is never touched.
func TestPurgeGroups(t *testing.T) {
	need(t, "groupdel", "passwd", "DPKG")
	sudo := asRoot(t)
	root := scratchRoot(t)
	in := func(p string) string { return filepath.Join(root, p) }
	appendTo := func(name, text string) {
		f, err := os.OpenFile(in(name), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(text); err != nil {
			t.Fatal(err)
		}
	}
	appendTo("etc/group", "i2c:x:990:\ngpio:x:991:pi\nspi:x:992:\nleds:x:993:\n")
	appendTo("etc/gshadow", "i2c:!::\ngpio:!::pi\nspi:!::\nleds:!::\n")
	appendTo("etc/passwd", "sensor:x:994:992::/nonexistent:/usr/sbin/nologin\n")
	appendTo("etc/shadow", "sensor:*:19000:0:99999:7:::\n")
	state := in("var/lib/cityedge")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	// created by postinst: i2c (unused), gpio (pi is in it), spi (primary
	// group of sensor); leds was there before.
	if err := os.WriteFile(filepath.Join(state, ".package-groups"), []byte("i2c\ngpio\nspi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runCmd(t, sudo, []string{"DPKG_ROOT=" + root}, "sh", "debian/postrm", "purge")
	for g, want := range map[string]string{"i2c": "", "gpio": "gpio:x:991:pi", "spi": "spi:x:992:", "leds": "leds:x:993:"} {
		if got := accountEntry(t, root, "group", g); got != want {
			t.Errorf("after purge, group %s = %q, want %q", g, got, want)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("purge left %s", state)
	}
}
