// Package discovery finds the API addresses of peers: a static list
// (--join) or DNS (--discover dns:NAME[:PORT] for A/AAAA records,
// dns+srv:NAME for SRV records), resolved again on every call so that a
// node waiting for its peers sees them appear.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
)

// DefaultPort is the API port assumed for A/AAAA records without one.
const DefaultPort = 7070

// Source lists peers' API addresses (host:port).
type Source interface {
	Peers(ctx context.Context) ([]string, error)
	String() string
}

// Resolver is the part of *net.Resolver that DNS sources use.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// ErrBadSpec: the --discover value cannot be parsed.
var ErrBadSpec = errors.New("discovery: invalid source")

// Parse reads a --discover value: dns:NAME, dns:NAME:PORT or dns+srv:NAME.
func Parse(spec string, r Resolver) (Source, error) {
	if r == nil {
		r = net.DefaultResolver
	}
	kind, rest, ok := strings.Cut(spec, ":")
	if !ok || rest == "" {
		return nil, fmt.Errorf("%w %q: want dns:NAME[:PORT] or dns+srv:NAME", ErrBadSpec, spec)
	}
	switch kind {
	case "dns":
		name, port := rest, DefaultPort
		if h, p, err := net.SplitHostPort(rest); err == nil {
			n, perr := strconv.Atoi(p)
			if perr != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("%w %q: port %q is not a number in 1..65535", ErrBadSpec, spec, p)
			}
			name, port = h, n
		}
		return &dnsA{r: r, name: name, port: port}, nil
	case "dns+srv":
		return &dnsSRV{r: r, name: rest}, nil
	}
	return nil, fmt.Errorf("%w %q: unknown kind %q (want dns or dns+srv)", ErrBadSpec, spec, kind)
}

// Static is a fixed list (--join).
type Static []string

func (s Static) Peers(context.Context) ([]string, error) { return s, nil }
func (s Static) String() string                          { return strings.Join(s, ",") }

type dnsA struct {
	r    Resolver
	name string
	port int
}

func (d *dnsA) Peers(ctx context.Context) ([]string, error) {
	ips, err := d.r.LookupHost(ctx, d.name)
	if err != nil {
		return nil, fmt.Errorf("discovery: resolve %s: %w", d.name, err)
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip, strconv.Itoa(d.port)))
	}
	sort.Strings(out)
	return out, nil
}

func (d *dnsA) String() string { return fmt.Sprintf("dns:%s:%d", d.name, d.port) }

type dnsSRV struct {
	r    Resolver
	name string
}

func (d *dnsSRV) Peers(ctx context.Context) ([]string, error) {
	_, srvs, err := d.r.LookupSRV(ctx, "", "", d.name)
	if err != nil {
		return nil, fmt.Errorf("discovery: resolve SRV %s: %w", d.name, err)
	}
	out := make([]string, 0, len(srvs))
	for _, s := range srvs {
		out = append(out, net.JoinHostPort(strings.TrimSuffix(s.Target, "."), strconv.Itoa(int(s.Port))))
	}
	sort.Strings(out)
	return out, nil
}

func (d *dnsSRV) String() string { return "dns+srv:" + d.name }

// Without drops this node's own addresses from peers: any address whose
// port is selfPort and whose host is one of this machine's interface IPs or
// one of selfHosts (the advertised name, for instance).
func Without(peers []string, selfPort string, selfHosts ...string) []string {
	local := map[string]bool{}
	for _, h := range selfHosts {
		local[h] = true
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				local[ipn.IP.String()] = true
			}
		}
	}
	out := peers[:0:0]
	for _, p := range peers {
		h, port, err := net.SplitHostPort(p)
		if err == nil && port == selfPort && local[h] {
			continue
		}
		out = append(out, p)
	}
	return out
}
