package certs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Watch polls the three files every interval and reloads when one of them was
// replaced or changed (inode, size, mtime, mode or owner: cert tools and
// configuration managers replace files by atomic rename). A change is acted
// on once the files have stayed the same for one interval, so that a
// certificate and key renamed into place one after the other are read as a
// pair rather than rejected as a mismatch in between.
//
// changed is called, from Watch's goroutine, after a reload that changed the
// client certificate or the CA bundle, so that the uplink reconnects and the
// next handshake uses the new set; it should not block for long. A rejected
// set is logged and kept for Status; the current set stays live. A set
// rejected only because it is not valid yet is retried every interval, since
// it becomes valid as time passes.
//
// Watch also logs when the live set crosses the warning threshold or becomes
// unusable. It returns nil when ctx is done.
func (s *Store) Watch(ctx context.Context, every time.Duration, changed func()) error {
	if every <= 0 {
		return fmt.Errorf("certs: watch interval must be positive, got %v", every)
	}
	var processed [3]stamp
	if m := s.live.Load(); m != nil {
		processed = m.stamps
	} else {
		// No usable set yet: any change to the files since Open judged them
		// (a new file, chmod 600, chown) is tried.
		processed = s.openStamps
	}
	pending := processed
	level := s.level()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		ca, cert, key := s.files() // Install may point the store at other files
		cur := statAll([3]string{ca, cert, key})
		switch {
		case cur != processed && cur == pending:
			processed = cur
			s.reloadAndReport(changed, false)
		case cur == processed && s.notYetValid():
			s.reloadAndReport(changed, true)
		}
		pending = cur
		if l := s.level(); l != level {
			level = l
			s.logLevel(l)
		}
	}
}

func (s *Store) reloadAndReport(changed func(), quiet bool) {
	client, ca, err := s.reload()
	if err != nil {
		switch {
		case quiet:
		case s.live.Load() == nil:
			s.log.Error("TLS material changed but is still unusable; the uplink stays down", "err", err)
		default:
			s.log.Warn("new certificate set rejected; keeping the current one", "err", err)
		}
		return
	}
	st := s.Status()
	s.log.Info("certificate set reloaded", "subject", st.ClientSubject, "serial", st.ClientSerial,
		"not_after", st.ClientNotAfter, "client_changed", client, "ca_changed", ca)
	if (client || ca) && changed != nil {
		changed()
	}
}

func (s *Store) notYetValid() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Is(s.lastErr, ErrNotYetValid)
}

// Alert levels of the live set, for logging transitions only.
const (
	levelOK = iota
	levelWarn
	levelUnusable
)

func (s *Store) level() int {
	st := s.Status()
	switch {
	case st.Expired || st.Unusable:
		return levelUnusable
	case st.Warning != "":
		return levelWarn
	}
	return levelOK
}

func (s *Store) logLevel(l int) {
	st := s.Status()
	switch l {
	case levelUnusable:
		s.log.Error("client certificate unusable; the uplink waits and readings stay buffered", "warning", st.Warning)
	case levelWarn:
		s.log.Warn("client certificate needs attention", "warning", st.Warning)
	default:
		s.log.Info("client certificate valid", "subject", st.ClientSubject, "days_left", st.ClientDaysLeft)
	}
}

func statAll(paths [3]string) [3]stamp {
	var st [3]stamp
	for i, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			st[i] = stampOf(fi)
		}
	}
	return st
}
