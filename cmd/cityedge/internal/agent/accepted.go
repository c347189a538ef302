package agent

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cityedge/cityedge/buffer"
)

// The accepted part of a reading Sentilo took in part. A 404 stores the
// observations of registered, online sensors and rejects the others
// (uplink/sentilo); a reading with several values (temperature and
// humidity) may so be half delivered. Its record stays in the buffer for
// the held half, and the ids Sentilo stored are kept beside it with the
// buffer's kept state (buffer.SetState: written in the next commit, which
// the acknowledgements cause anyway, no format change), so that after a
// restart only the held half is sent: Sentilo de-duplicates nothing. The
// entry goes when the reading is delivered in full; entries of readings
// that left the buffer otherwise (the bound, an undecodable record) are
// removed at the next start. As for acknowledgements, a kill within
// commit_interval of the accept may resend it once.

// acceptedKeeper is what the Sentilo output keeps its accepted parts in (the
// buffer's kept state).
type acceptedKeeper interface {
	SetState(key string, val []byte) error
	StateWithPrefix(prefix string) map[string][]byte
}

var _ acceptedKeeper = (*buffer.Queue)(nil)

// acceptedPrefix is the kept-state key prefix of accepted parts:
// "sentilo/accepted/<seq in hex>" → the stored ids, comma-separated
// (Sentilo ids never hold a comma).
const acceptedPrefix = "sentilo/accepted/"

func acceptedKey(seq uint64) string { return fmt.Sprintf("%s%016x", acceptedPrefix, seq) }

// loadAccepted reads the kept accepted parts once, and removes those of
// readings Sentilo no longer has to get (below its first one in the buffer).
func (s *sentiloOutput) loadAccepted() {
	if s.accepted != nil || s.keep == nil {
		return
	}
	s.accepted = map[uint64][]string{}
	kept := s.keep.StateWithPrefix(acceptedPrefix)
	if len(kept) == 0 {
		return
	}
	first := ^uint64(0)
	if es, err := s.q.ReadAfter(0, 1, 0); err == nil && len(es) > 0 {
		first = es[0].Seq
	} else if err != nil {
		first = 0 // keep everything; judged again at the next start
	}
	for k, v := range kept {
		seq, err := strconv.ParseUint(k, 16, 64)
		if err != nil {
			continue
		}
		if seq < first {
			s.setState(acceptedKey(seq), nil)
			continue
		}
		s.accepted[seq] = strings.Split(string(v), ",")
	}
	if n := len(s.accepted); n > 0 {
		s.log.Info("sentilo: readings Sentilo stored in part before the restart; only their held part is sent", "readings", n)
	}
}

// restoreAccepted marks what Sentilo stored of reading seq before a
// restart as done; true when nothing of it is left to send.
func (s *sentiloOutput) restoreAccepted(seq uint64, p *sentiloPending) bool {
	ids, ok := s.accepted[seq]
	if !ok {
		return false
	}
	delete(s.accepted, seq)
	for i, r := range p.rs {
		if slices.Contains(ids, r.ID) {
			p.done[i] = true
			p.kept++
		}
	}
	if slices.Contains(p.done, false) {
		return false
	}
	s.setState(acceptedKey(seq), nil)
	return true
}

// keepAccepted keeps what Sentilo stored of reading seq, delivered in part.
func (s *sentiloOutput) keepAccepted(seq uint64, p *sentiloPending) {
	var ids []string
	for i, r := range p.rs {
		if p.done[i] {
			ids = append(ids, r.ID)
		}
	}
	if s.keep == nil || len(ids) == p.kept { // nothing new: a held sensor's retry
		return
	}
	s.setState(acceptedKey(seq), []byte(strings.Join(ids, ",")))
	p.kept = len(ids)
}

// forgetAccepted drops the kept part of a reading delivered in full.
func (s *sentiloOutput) forgetAccepted(seq uint64, p *sentiloPending) {
	if p.kept > 0 && s.keep != nil {
		s.setState(acceptedKey(seq), nil)
	}
}

func (s *sentiloOutput) setState(key string, val []byte) {
	if err := s.keep.SetState(key, val); err != nil && !errors.Is(err, buffer.ErrClosed) {
		s.log.Error("sentilo: keep the accepted part of a reading", "key", key, "err", err)
	}
}
