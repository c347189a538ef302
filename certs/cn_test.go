package certs

import (
	"strings"
	"testing"

	"github.com/cityedge/cityedge/certs/devpki"
)

// TestClientCNDiffersFromAgentID: a client certificate whose CN is not
// agent.id is used (it is valid) but Status warns, naming both names, since
// a broker that maps the CN to its user applies another gateway's ACLs.
func TestClientCNDiffersFromAgentID(t *testing.T) {
	for _, c := range []struct {
		cn   string
		warn bool
	}{{agentID, false}, {"gw-other", true}} {
		f := newFixture(t)
		iss := f.issue(t, "cn", devpki.Leaf{CN: c.cn, Client: true})
		f.opts.CertFile, f.opts.KeyFile = iss.CertFile, iss.KeyFile
		f.opts.ExpectCN = agentID
		s, err := Load(f.opts)
		if err != nil {
			t.Fatal(err)
		}
		st := s.Status()
		got := strings.Contains(st.Warning, "is not agent.id")
		if got != c.warn || st.Unusable {
			t.Errorf("CN %s: warning %q (unusable %v), want a CN warning: %v", c.cn, st.Warning, st.Unusable, c.warn)
		}
		if c.warn && !strings.Contains(st.Warning, `CN="gw-other"`) {
			t.Errorf("warning does not name the certificate's CN: %s", st.Warning)
		}
	}
}
