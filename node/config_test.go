package node

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kvd-project/kvd/membership"
)

func TestConfigValidate(t *testing.T) {
	seeds := func() []string { return []string{"127.0.0.1:7070"} }
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   string // in the error; "" = valid
	}{
		{"default", func(c *Config) {}, ""},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data dir is empty"},
		{"no raft address", func(c *Config) { c.RaftAddr = "" }, "raft address is empty"},
		{"raft address without port", func(c *Config) { c.RaftAddr = "localhost" }, `raft address "localhost"`},
		{"RTT below 1ms", func(c *Config) { c.RTT = time.Microsecond }, "RTT (1µs) must be at least 1ms"},
		{"no heartbeat", func(c *Config) { c.HeartbeatTicks = 0 }, "HeartbeatTicks must be > 0"},
		{"election too short", func(c *Config) { c.ElectionTicks, c.HeartbeatTicks = 4, 2 }, "ElectionTicks (4) must be > 2×HeartbeatTicks (2)"},
		{"election just long enough", func(c *Config) { c.ElectionTicks, c.HeartbeatTicks = 5, 2 }, ""},
		{"compaction overhead too large", func(c *Config) { c.SnapshotEntries, c.CompactionOverhead = 100, 400 },
			"CompactionOverhead (400) should be below 4×SnapshotEntries (100)"},
		{"manual snapshots only", func(c *Config) { c.SnapshotEntries, c.CompactionOverhead = 0, 400 }, ""},
		{"join without dialer", func(c *Config) { c.Seeds = seeds }, "joining needs a PeerDialer"},
		{"negative bootstrap-expect", func(c *Config) { c.BootstrapExpect = -1 }, "--bootstrap-expect (-1) must not be negative"},
		{"bootstrap-expect without discovery", func(c *Config) { c.BootstrapExpect = 3 }, "--bootstrap-expect needs --discover or --join"},
		{"bootstrap-expect with initial members", func(c *Config) {
			c.Seeds, c.Peers, c.BootstrapExpect = seeds, fakeDialer{}, 3
			c.InitialMembers = map[membership.ReplicaID]string{1: "127.0.0.1:7170"}
		}, "--bootstrap-expect and --initial-members exclude each other"},
		{"initial member ID 0", func(c *Config) { c.InitialMembers = map[membership.ReplicaID]string{0: "127.0.0.1:7170"} },
			"initial member ID 0 is not allowed"},
		{"initial member without port", func(c *Config) { c.InitialMembers = map[membership.ReplicaID]string{2: "host"} },
			`initial member 2 address "host"`},
		{"even voter target", func(c *Config) { c.Policy.Voters = 2 }, "--voters (2) must be odd"},
		{"certificate without key", func(c *Config) { c.TLS.CertFile = "c.pem" }, "--cert-file and --key-file go together"},
		{"certificate without CA", func(c *Config) { c.TLS.CertFile, c.TLS.KeyFile = "c.pem", "k.pem" }, "--cert-file needs --trusted-ca-file"},
		{"CA without certificate", func(c *Config) { c.TLS.CAFile = "ca.pem" }, "--trusted-ca-file needs --cert-file"},
		{"TLS complete", func(c *Config) { c.TLS = TLSFiles{CertFile: "c.pem", KeyFile: "k.pem", CAFile: "ca.pem"} }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.change(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Validate() = %v, want an error with %q", err, tc.want)
			case err != nil && !errors.Is(err, ErrBadConfig) && !errors.Is(err, membership.ErrBadFlags):
				t.Fatalf("Validate() = %v: not ErrBadConfig (nor membership.ErrBadFlags for the policy)", err)
			}
		})
	}
}

// fakeDialer stands in for a PeerDialer that Validate only checks is set.
type fakeDialer struct{ membership.PeerDialer }
