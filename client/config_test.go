package client

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := []string{"127.0.0.1:7070"}
	tests := []struct {
		name string
		cfg  Config
		want string // part of the error; "" = valid
	}{
		{"defaults", DefaultConfig(), ""},
		{"only endpoints", Config{Endpoints: ok}, ""},
		{"url endpoints", Config{Endpoints: []string{"http://a:1", "http://b:2/", "[::1]:3"}}, ""},
		{"https endpoints", Config{Endpoints: []string{"https://a:1", "https://b:2/"}}, ""},
		{"tls host:port", Config{Endpoints: []string{"a:1", "https://b:2"}, TLS: &tls.Config{}}, ""},
		{"mixed schemes", Config{Endpoints: []string{"http://a:1", "https://b:2"}},
			`Config.Endpoints mixes http ("http://a:1") and https ("https://b:2")`},
		{"mixed with tls", Config{Endpoints: []string{"a:1", "http://b:2"}, TLS: &tls.Config{}},
			`Config.Endpoints mixes http ("http://b:2") and https ("a:1")`},
		{"tls with http", Config{Endpoints: []string{"http://a:1"}, TLS: &tls.Config{}},
			`Config.TLS is set but endpoint "http://a:1" is http://`},
		{"tls with http client", Config{Endpoints: ok, TLS: &tls.Config{}, HTTPClient: http.DefaultClient},
			"Config.TLS and Config.HTTPClient are both set"},
		{"no endpoints", Config{}, "Config.Endpoints is empty"},
		{"empty endpoint", Config{Endpoints: []string{"a:1", " "}}, `endpoint " " is empty`},
		{"no port", Config{Endpoints: []string{"localhost"}}, `endpoint "localhost" has no host or port`},
		{"bad scheme", Config{Endpoints: []string{"ftp://a:1"}}, `scheme "ftp"`},
		{"duplicate", Config{Endpoints: []string{"a:1", "http://a:1"}}, `lists "http://a:1" twice`},
		{"protocol", Config{Endpoints: ok, Protocol: "http3"}, `Config.Protocol "http3" is not one of`},
		{"timeout", Config{Endpoints: ok, RequestTimeout: -time.Second}, "Config.RequestTimeout (-1s) must be > 0"},
		{"attempts", Config{Endpoints: ok, MaxAttempts: -1}, "Config.MaxAttempts (-1) must be >= 1"},
		{"backoff order", Config{Endpoints: ok, BackoffBase: 2 * time.Second, BackoffMax: time.Second},
			"Config.BackoffMax (1s) must be >= BackoffBase (2s)"},
		{"base above default max", Config{Endpoints: ok, BackoffBase: 2 * time.Second}, ""},
		{"join secret", Config{Endpoints: ok, JoinSecret: "s3cret with spaces, ünïcode"}, ""},
		{"join secret newline", Config{Endpoints: ok, JoinSecret: "s3cret\n"}, "Config.JoinSecret has a control character"},
		{"join secret blank", Config{Endpoints: ok, JoinSecret: " s3cret"}, "leading or trailing blanks"},
		{"join secret control", Config{Endpoints: ok, JoinSecret: "s3\x00cret"}, "Config.JoinSecret has"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want it to contain %q", err, tt.want)
			}
			if err != nil && tt.cfg.JoinSecret != "" && strings.Contains(err.Error(), "s3") {
				t.Errorf("Validate() = %v: the message shows the secret", err)
			}
			if _, nerr := New(tt.cfg); (nerr == nil) != (err == nil) {
				t.Errorf("New and Validate disagree: %v vs %v", nerr, err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := DefaultConfig()
	if c.Protocol != ProtocolConnect || c.RequestTimeout != DefaultRequestTimeout ||
		c.MaxAttempts != DefaultMaxAttempts || c.BackoffBase != DefaultBackoffBase ||
		c.BackoffMax != DefaultBackoffMax || c.DialTimeout != DefaultDialTimeout {
		t.Errorf("DefaultConfig() = %+v", c)
	}
}

func TestNormalizeEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:7070":         "http://127.0.0.1:7070",
		"http://h:1/":            "http://h:1",
		"https://h:1":            "https://h:1",
		" h:1 ":                  "http://h:1",
		"http://h:1/prefix/kvd/": "http://h:1/prefix/kvd",
	} {
		if got, err := normalizeEndpoint(in, "http"); err != nil || got != want {
			t.Errorf("normalizeEndpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"127.0.0.1:7070": "https://127.0.0.1:7070",
		"http://h:1":     "http://h:1",
		"https://h:1/":   "https://h:1",
	} {
		if got, err := normalizeEndpoint(in, "https"); err != nil || got != want {
			t.Errorf("normalizeEndpoint(%q, https) = %q, %v; want %q", in, got, err, want)
		}
	}
}
