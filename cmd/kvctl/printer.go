package main

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/client"
)

// Output formats.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// printer writes command results as a table (or bare value, or key: value
// lines) for people and scripts, or as JSON with snake_case fields.
type printer struct {
	w    io.Writer
	json bool
}

func newPrinter(c *cli.Context) *printer {
	return &printer{w: c.App.Writer, json: c.String("output") == outputJSON}
}

func (p *printer) encode(v any) error {
	enc := json.NewEncoder(p.w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// kvJSON is a key-value in JSON. Keys and values are JSON strings when they
// are valid UTF-8; otherwise they go in key_base64 / value_base64 instead.
// Keys-only results have neither value field.
type kvJSON struct {
	Key            string  `json:"key,omitempty"`
	KeyBase64      string  `json:"key_base64,omitempty"`
	Value          *string `json:"value,omitempty"`
	ValueBase64    *string `json:"value_base64,omitempty"`
	CreateRevision uint64  `json:"create_revision"`
	ModRevision    uint64  `json:"mod_revision"`
	Version        uint64  `json:"version"`
}

func toKVJSON(kv client.KeyValue, keysOnly bool) kvJSON {
	out := kvJSON{CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version}
	if utf8.Valid(kv.Key) {
		out.Key = string(kv.Key)
	} else {
		out.KeyBase64 = base64.StdEncoding.EncodeToString(kv.Key)
	}
	if !keysOnly {
		if utf8.Valid(kv.Value) {
			s := string(kv.Value)
			out.Value = &s
		} else {
			s := base64.StdEncoding.EncodeToString(kv.Value)
			out.ValueBase64 = &s
		}
	}
	return out
}

// cell renders bytes for a table cell: as is when printable, Go-quoted when
// they hold tabs, newlines, other control characters or invalid UTF-8, so
// that one key is always one line.
func cell(b []byte) string {
	s := string(b)
	if !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	if s == "" {
		return `""`
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (p *printer) put(res client.PutResult) error {
	if p.json {
		return p.encode(struct {
			Revision uint64 `json:"revision"`
		}{res.Revision})
	}
	_, err := fmt.Fprintf(p.w, "OK revision=%d\n", res.Revision)
	return err
}

// get prints the bare value and a newline in table mode, so that
// v=$(kvctl get k) works.
func (p *printer) get(kv *client.KeyValue) error {
	if p.json {
		return p.encode(toKVJSON(*kv, false))
	}
	if _, err := p.w.Write(kv.Value); err != nil {
		return err
	}
	_, err := io.WriteString(p.w, "\n")
	return err
}

func (p *printer) del(res client.DeleteResult) error {
	if p.json {
		return p.encode(struct {
			Revision uint64 `json:"revision"`
			Deleted  bool   `json:"deleted"`
		}{res.Revision, res.Deleted})
	}
	deleted := 0
	if res.Deleted {
		deleted = 1
	}
	_, err := fmt.Fprintf(p.w, "OK revision=%d deleted=%d\n", res.Revision, deleted)
	return err
}

func (p *printer) kvs(kvs []client.KeyValue, keysOnly bool) error {
	if p.json {
		out := make([]kvJSON, 0, len(kvs))
		for _, kv := range kvs {
			out = append(out, toKVJSON(kv, keysOnly))
		}
		return p.encode(out)
	}
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	if keysOnly {
		fmt.Fprintln(tw, "KEY")
	} else {
		fmt.Fprintln(tw, "KEY\tVALUE")
	}
	for _, kv := range kvs {
		if keysOnly {
			fmt.Fprintln(tw, cell(kv.Key))
		} else {
			fmt.Fprintf(tw, "%s\t%s\n", cell(kv.Key), cell(kv.Value))
		}
	}
	return tw.Flush()
}

// memberJSON is one member in `kvctl -o json members`. IDs of joined
// members are up to 2^63: decode id as an integer type, not a float.
type memberJSON struct {
	ID           uint64 `json:"id"`
	Role         string `json:"role"`
	State        string `json:"state"`
	RaftAddr     string `json:"raft_addr"`
	APIAddr      string `json:"api_addr"`
	AppliedIndex uint64 `json:"applied_index"`
	Lag          uint64 `json:"lag"`
	Leader       bool   `json:"leader"`
	Ready        bool   `json:"ready"`
	Reason       string `json:"reason"`
	// DownForMs is how long the answering node has not reached the member
	// (0 = reachable).
	DownForMs uint64 `json:"down_for_ms"`
}

func (p *printer) members(res *client.MembersResult) error {
	if p.json {
		out := make([]memberJSON, 0, len(res.Members))
		for _, m := range res.Members {
			out = append(out, memberJSON{
				ID: uint64(m.ID), Role: m.Role.String(), State: m.State, RaftAddr: m.RaftAddr,
				APIAddr: m.APIAddr, AppliedIndex: m.AppliedIndex, Lag: m.Lag, Leader: m.Leader,
				Ready: m.Ready, Reason: m.Reason, DownForMs: uint64(m.DownFor / time.Millisecond),
			})
		}
		return p.encode(out)
	}
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tSTATE\tRAFT ADDR\tAPI ADDR\tAPPLIED\tLAG\tLEADER\tDOWN\tREASON")
	for _, m := range res.Members {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%t\t%s\t%s\n", m.ID, m.Role, orDash(m.State),
			orDash(m.RaftAddr), orDash(m.APIAddr), m.AppliedIndex, m.Lag, m.Leader, downFor(m.DownFor),
			orDash(m.Reason))
	}
	return tw.Flush()
}

// downFor renders how long a member has been unreachable: empty when it is
// reachable, whole seconds from 1s on ("12s", "2m5s").
func downFor(d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Truncate(time.Second).String()
}

// promoted confirms `kvctl members promote`.
func (p *printer) promoted(id client.MemberID) error {
	if p.json {
		return p.encode(struct {
			ID   uint64 `json:"id"`
			Role string `json:"role"`
		}{uint64(id), client.RoleVoter.String()})
	}
	_, err := fmt.Fprintf(p.w, "promoted member %d to voter\n", id)
	return err
}

// removed confirms `kvctl members remove`.
func (p *printer) removed(id client.MemberID) error {
	if p.json {
		return p.encode(struct {
			ID      uint64 `json:"id"`
			Removed bool   `json:"removed"`
		}{uint64(id), true})
	}
	_, err := fmt.Fprintf(p.w, "removed member %d\n", id)
	return err
}

// statusJSON is `kvctl -o json status`.
type statusJSON struct {
	Endpoint     string `json:"endpoint"`
	ID           uint64 `json:"id"`
	Role         string `json:"role"`
	State        string `json:"state"`
	Ready        bool   `json:"ready"`
	LeaderID     uint64 `json:"leader_id"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	RaftAddr     string `json:"raft_addr"`
	APIAddr      string `json:"api_addr"`
	Version      string `json:"version"`
	Voters       uint64 `json:"voters"`
	Observers    uint64 `json:"observers"`
	Reason       string `json:"reason"`
	// CatchUpTarget is, while catching up, the index the node is catching
	// up to (0 = unknown).
	CatchUpTarget uint64 `json:"catch_up_target"`
}

func (p *printer) status(st *client.Status) error {
	s := statusJSON{
		Endpoint: st.Endpoint, ID: uint64(st.ID), Role: st.Role.String(), State: st.State, Ready: st.Ready,
		LeaderID: uint64(st.LeaderID), Term: st.Term, AppliedIndex: st.AppliedIndex, RaftAddr: st.RaftAddr,
		APIAddr: st.APIAddr, Version: st.Version, Voters: st.Voters, Observers: st.Observers,
		Reason: st.Reason, CatchUpTarget: st.CatchUpTarget,
	}
	if p.json {
		return p.encode(s)
	}
	if _, err := fmt.Fprintf(p.w, `endpoint: %s
id: %d
role: %s
state: %s
ready: %t
leader_id: %d
term: %d
applied_index: %d
raft_addr: %s
api_addr: %s
version: %s
voters: %d
observers: %d
reason: %s
`, s.Endpoint, s.ID, s.Role, orDash(s.State), s.Ready, s.LeaderID, s.Term, s.AppliedIndex,
		orDash(s.RaftAddr), orDash(s.APIAddr), orDash(s.Version), s.Voters, s.Observers, orDash(s.Reason)); err != nil {
		return err
	}
	if !s.Ready && s.CatchUpTarget > 0 {
		if _, err := fmt.Fprintf(p.w, "catch_up: applied %d of %d\n", s.AppliedIndex, s.CatchUpTarget); err != nil {
			return err
		}
	}
	return nil
}

// certJSON is `kvctl -o json certs ca|issue`: the files written and the
// certificate's names (DNS names, then IP addresses) and expiry.
type certJSON struct {
	Cert     string    `json:"cert"`
	Key      string    `json:"key"`
	Subject  string    `json:"subject"`
	IsCA     bool      `json:"is_ca"`
	Hosts    []string  `json:"hosts"`
	NotAfter time.Time `json:"not_after"`
}

// certWritten confirms `kvctl certs ca` and `kvctl certs issue`.
func (p *printer) certWritten(certPath, keyPath string, cert *x509.Certificate) error {
	hosts := append([]string{}, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	if p.json {
		return p.encode(certJSON{Cert: certPath, Key: keyPath, Subject: cert.Subject.CommonName, IsCA: cert.IsCA,
			Hosts: hosts, NotAfter: cert.NotAfter.UTC()})
	}
	what := "certificate " + strconv.Quote(cert.Subject.CommonName)
	if cert.IsCA {
		what = "CA " + strconv.Quote(cert.Subject.CommonName)
	} else {
		what += " for " + strings.Join(hosts, ", ")
	}
	_, err := fmt.Fprintf(p.w, "wrote %s and %s: %s, valid until %s\n", certPath, keyPath, what,
		cert.NotAfter.UTC().Format(time.DateOnly))
	return err
}
