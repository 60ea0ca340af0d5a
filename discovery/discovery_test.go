package discovery

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
)

type fakeResolver struct {
	hosts map[string][]string
	srv   map[string][]*net.SRV
}

func (f fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if h, ok := f.hosts[host]; ok {
		return h, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (f fakeResolver) LookupSRV(_ context.Context, _, _, name string) (string, []*net.SRV, error) {
	if s, ok := f.srv[name]; ok {
		return name, s, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func TestParseAndResolve(t *testing.T) {
	r := fakeResolver{
		hosts: map[string][]string{"kvd": {"10.0.0.3", "10.0.0.2"}},
		srv:   map[string][]*net.SRV{"_api._tcp.kvd": {{Target: "b.kvd.", Port: 7000}, {Target: "a.kvd.", Port: 7001}}},
	}
	tests := []struct {
		spec string
		want []string
		err  string
	}{
		{"dns:kvd", []string{"10.0.0.2:7070", "10.0.0.3:7070"}, ""},
		{"dns:kvd:9000", []string{"10.0.0.2:9000", "10.0.0.3:9000"}, ""},
		{"dns+srv:_api._tcp.kvd", []string{"a.kvd:7001", "b.kvd:7000"}, ""},
		{"dns:missing", nil, "resolve missing"},
		{"dns:kvd:http", nil, "not a number"},
		{"consul:kvd", nil, "unknown kind"},
		{"kvd", nil, "want dns:NAME"},
		{"dns:", nil, "want dns:NAME"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			src, err := Parse(tt.spec, r)
			if err == nil {
				var got []string
				got, err = src.Peers(context.Background())
				if err == nil && !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("peers %v, want %v", got, tt.want)
				}
			}
			if tt.err == "" && err != nil {
				t.Fatal(err)
			}
			if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("err %v, want %q", err, tt.err)
			}
			if strings.Contains(tt.err, "want") && !errors.Is(err, ErrBadSpec) {
				t.Fatalf("err %v is not ErrBadSpec", err)
			}
		})
	}
}

func TestWithout(t *testing.T) {
	peers := []string{"127.0.0.1:7070", "127.0.0.1:7071", "kvd-1:7070", "10.9.9.9:7070"}
	got := Without(peers, "7070", "kvd-1")
	want := []string{"127.0.0.1:7071", "10.9.9.9:7070"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// Parse reads a flag from the outside: it must never panic, and it either
// errors with ErrBadSpec or returns a source.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"dns:kvd", "dns:kvd:7070", "dns+srv:_api._tcp.kvd", "dns:", ":", "dns:a:b:c", "dns:[::1]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		src, err := Parse(s, fakeResolver{})
		if (err == nil) == (src == nil) {
			t.Fatalf("%q: source %v, err %v", s, src, err)
		}
		if err != nil && !errors.Is(err, ErrBadSpec) {
			t.Fatalf("%q: error %v is not ErrBadSpec", s, err)
		}
	})
}
