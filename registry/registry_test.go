package registry

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestOrder(t *testing.T) {
	e := func(addr string, passing bool, cluster string) Entry {
		return Entry{APIAddr: addr, Passing: passing, ClusterID: cluster}
	}
	for _, tc := range []struct {
		name    string
		in      []Entry
		want    []string
		wantErr string
	}{
		{name: "empty catalog", in: nil, want: []string{}},
		{name: "forming: nobody healthy, nobody has a cluster",
			in:   []Entry{e("b:1", false, ""), e("a:1", false, "")},
			want: []string{"a:1", "b:1"}},
		{name: "healthy first",
			in:   []Entry{e("a:1", false, "c1"), e("b:1", true, "c1"), e("c:1", false, "")},
			want: []string{"b:1", "a:1", "c:1"}},
		{name: "a wiped cluster's dead entry is left out",
			in:   []Entry{e("old:1", false, "c0"), e("b:1", true, "c1"), e("joiner:1", false, "")},
			want: []string{"b:1", "joiner:1"}},
		{name: "two healthy clusters under one service: refuse",
			in:      []Entry{e("a:1", true, "c1"), e("b:1", true, "c2")},
			wantErr: "2 clusters (c1, c2)"},
		{name: "no healthy instance: nothing can be told stale",
			in:   []Entry{e("a:1", false, "c0"), e("b:1", false, "c1")},
			want: []string{"a:1", "b:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Order(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		spec, service string
		consul, err   bool
	}{
		{"consul:kvd", "kvd", true, false},
		{"dns:kvd", "", false, false},
		{"consul:", "", true, true},
		{"consul:kvd:7070", "", true, true},
	} {
		service, ok, err := ParseSpec(tc.spec)
		if service != tc.service || ok != tc.consul || (err != nil) != tc.err {
			t.Errorf("ParseSpec(%q) = %q, %v, %v", tc.spec, service, ok, err)
		}
	}
}

func TestRegistration(t *testing.T) {
	c, err := New(Config{Service: "kvd", Addr: "http://127.0.0.1:1", CheckTLS: true, DeregisterAfter: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.registration(Instance{APIAddr: "n1:7070", RaftAddr: "n1:7170", ReplicaID: 42, Role: "observer", Ready: true, State: "ready", ClusterID: "ab"})
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != "kvd-n1:7070" || r.Address != "n1" || r.Port != 7070 {
		t.Errorf("entry %s at %s:%d", r.ID, r.Address, r.Port)
	}
	want := map[string]string{"replica_id": "42", "raft_addr": "n1:7170", "role": "observer", "ready": "true", "cluster_id": "ab", "state": "ready"}
	if !reflect.DeepEqual(r.Meta, want) {
		t.Errorf("meta %v, want %v", r.Meta, want)
	}
	if r.Check.HTTP != "https://n1:7070/readyz" || r.Check.Status != "passing" || r.Check.DeregisterCriticalServiceAfter != "1m0s" {
		t.Errorf("check %+v", r.Check)
	}
	r, _ = c.registration(Instance{APIAddr: "n1:7070", Role: RoleJoining})
	if r.Meta["replica_id"] != "" || r.Check.Status != "critical" {
		t.Errorf("a joining node: meta %v, check status %q", r.Meta, r.Check.Status)
	}
	if _, err := c.registration(Instance{APIAddr: "n1"}); err == nil {
		t.Error("an API address without a port was accepted")
	}
}

// Consul answers a read its ACLs deny with an empty list and no error;
// without a token under a deny-by-default policy, Peers says what to do
// instead of reporting no peers.
func TestPeersExplainsACLs(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// What Consul 1.16 sends with ACLs on (its headers are parsed in
		// order: without LastContact the rest is skipped).
		w.Header().Set("X-Consul-Index", "1")
		w.Header().Set("X-Consul-LastContact", "0")
		w.Header().Set("X-Consul-KnownLeader", "true")
		w.Header().Set("X-Consul-Default-Acl-Policy", "deny")
		fmt.Fprint(w, "[]")
	}))
	defer srv.Close()
	t.Setenv("CONSUL_HTTP_TOKEN", "")
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", "")
	c, err := New(Config{Service: "kvd", Addr: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Peers(context.Background()); err == nil || !strings.Contains(err.Error(), "CONSUL_HTTP_TOKEN") {
		t.Fatalf("no token, deny by default, empty list: %v", err)
	}
	t.Setenv("CONSUL_HTTP_TOKEN", "some-token")
	c, err = New(Config{Service: "kvd", Addr: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if peers, err := c.Peers(context.Background()); err != nil || len(peers) != 0 {
		t.Fatalf("with a token, an empty list is no peers yet: %v %v", peers, err)
	}
}
