package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/enmanuel/unibus/pkg/membership"
)

func TestIsLoopbackBind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		bind string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.0.0.53", true},
		{"127.1.2.3", true},
		{"::1", true},
		{"[::1]", true},
		{"localhost", true},
		{"LOCALHOST", true},
		{"0.0.0.0", false},
		{"", false},
		{"::", false},
		{"192.168.1.10", false},
		{"10.0.0.2", false},
		{"fe80::1", false},
		{"example.com", false},
		{"localhost.example.com", false},
		{"128.0.0.1", false},
	}
	for _, tt := range tests {
		if got := isLoopbackBind(tt.bind); got != tt.want {
			t.Errorf("isLoopbackBind(%q) = %v; want %v", tt.bind, got, tt.want)
		}
	}
}

func TestSplitRoutes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		csv  string
		want []string
	}{
		{"", nil},
		{" , ,", nil},
		{"nats://10.0.0.2:6250", []string{"nats://10.0.0.2:6250"}},
		{"nats://a:6250, nats://b:6250 ,,nats://c:6250", []string{"nats://a:6250", "nats://b:6250", "nats://c:6250"}},
	}
	for _, tt := range tests {
		if got := splitRoutes(tt.csv); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitRoutes(%q) = %q; want %q", tt.csv, got, tt.want)
		}
	}
}

func TestValidateBootConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		bind          string
		mode          membership.AuthMode
		cert, key     string
		wantErrSubstr string // "" means no error
	}{
		{"loopback off", "127.0.0.1", membership.AuthOff, "", "", ""},
		{"loopback soft", "localhost", membership.AuthSoft, "", "", ""},
		{"loopback enforce", "::1", membership.AuthEnforce, "", "", ""},
		{"public enforce", "0.0.0.0", membership.AuthEnforce, "", "", ""},
		{"public enforce tls", "0.0.0.0", membership.AuthEnforce, "s.crt", "s.key", ""},
		{"public off", "0.0.0.0", membership.AuthOff, "", "", "--bus-auth enforce"},
		{"public soft", "192.168.1.10", membership.AuthSoft, "", "", "--bus-auth enforce"},
		{"all interfaces off", "", membership.AuthOff, "", "", "--bus-auth enforce"},
		{"loopback tls off", "127.0.0.1", membership.AuthOff, "s.crt", "s.key", "--bus-auth enforce"},
		{"loopback cert only soft", "127.0.0.1", membership.AuthSoft, "s.crt", "", "--bus-auth enforce"},
		{"loopback key only off", "127.0.0.1", membership.AuthOff, "", "s.key", "--bus-auth enforce"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateBootConfig(tt.bind, tt.mode, tt.cert, tt.key)
			checkErr(t, err, tt.wantErrSubstr)
		})
	}
}

func TestValidateClusterConfig(t *testing.T) {
	t.Parallel()
	type args struct{ name, bind, user, pass, cert, key, ca string }
	tests := []struct {
		name          string
		a             args
		wantErrSubstr string
	}{
		{"standalone", args{bind: "127.0.0.1"}, ""},
		{"standalone public", args{bind: "0.0.0.0"}, ""},
		{"loopback cluster without secrets", args{name: "c", bind: "127.0.0.1"}, ""},
		{"public cluster complete", args{"c", "0.0.0.0", "u", "p", "n.crt", "n.key", "ca.crt"}, ""},
		{"public cluster no secret", args{"c", "0.0.0.0", "", "", "n.crt", "n.key", "ca.crt"}, "--cluster-user and --cluster-pass"},
		{"public cluster user only", args{"c", "10.0.0.1", "u", "", "n.crt", "n.key", "ca.crt"}, "--cluster-user and --cluster-pass"},
		{"public cluster no tls", args{"c", "0.0.0.0", "u", "p", "", "", ""}, "mutual route TLS"},
		{"public cluster nothing", args{name: "c", bind: "0.0.0.0"}, "--cluster-pass"},
		{"partial route tls standalone", args{bind: "127.0.0.1", cert: "n.crt"}, "add --route-tls-key and --route-tls-ca"},
		{"partial route tls no ca", args{"c", "127.0.0.1", "", "", "n.crt", "n.key", ""}, "add --route-tls-ca"},
		{"partial route tls public", args{"c", "0.0.0.0", "u", "p", "", "n.key", "ca.crt"}, "add --route-tls-cert"},
		{"route tls on loopback cluster", args{"c", "127.0.0.1", "", "", "n.crt", "n.key", "ca.crt"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.a
			err := validateClusterConfig(a.name, a.bind, a.user, a.pass, a.cert, a.key, a.ca)
			checkErr(t, err, tt.wantErrSubstr)
		})
	}
}

func checkErr(t *testing.T, err error, wantSubstr string) {
	t.Helper()
	switch {
	case wantSubstr == "" && err != nil:
		t.Errorf("error = %v; want none", err)
	case wantSubstr != "" && err == nil:
		t.Errorf("error = nil; want one mentioning %q", wantSubstr)
	case wantSubstr != "" && !strings.Contains(err.Error(), wantSubstr):
		t.Errorf("error = %q; want one mentioning %q", err, wantSubstr)
	}
}
