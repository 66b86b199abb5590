package bench_test

import (
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/bench"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*bench.Options)
		want   string // in the error; "" for none
	}{
		{"defaults", func(*bench.Options) {}, ""},
		{"every part skipped", func(o *bench.Options) { o.Skip = []string{"raw", "e2e", "api", "rekey"} }, ""},
		{"rekey of two", func(o *bench.Options) { o.RekeyMembers = 2 }, ""},
		{"size too small", func(o *bench.Options) { o.Size = 8 }, "--size 8: use at least 24 bytes"},
		{"size too large", func(o *bench.Options) { o.Size = 2 << 20 }, "--size 2097152: use at most"},
		{"no messages", func(o *bench.Options) { o.Msgs = 0 }, "--msgs 0"},
		{"no publisher", func(o *bench.Options) { o.Pub = 0 }, "--pub and --sub need at least 1"},
		{"no subscriber", func(o *bench.Options) { o.Sub = 0 }, "--pub and --sub need at least 1"},
		{"more publishers than messages", func(o *bench.Options) { o.Pub, o.Msgs = 3, 2 }, "every publisher needs a message"},
		{"negative rate", func(o *bench.Options) { o.Rate = -1 }, "--rate -1"},
		{"no concurrency", func(o *bench.Options) { o.Concurrency = 0 }, "--concurrency 0"},
		{"no duration", func(o *bench.Options) { o.Duration = 0 }, "--duration 0s"},
		{"negative requests", func(o *bench.Options) { o.Requests = -1 }, "--requests -1"},
		{"rekey of one", func(o *bench.Options) { o.RekeyMembers = 1 }, "at least 2 members"},
		{"negative rekey", func(o *bench.Options) { o.RekeyMembers = -5 }, "--rekey-members -5"},
		{"no timeout", func(o *bench.Options) { o.Timeout = -time.Second }, "--timeout -1s"},
		{"unknown part", func(o *bench.Options) { o.Skip = []string{"raw", "disk"} }, `--skip "disk": the parts are raw, e2e, api, rekey`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := bench.DefaultOptions()
			tt.change(&o)
			err := o.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v; want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v; want an error containing %q", err, tt.want)
			}
		})
	}
}
