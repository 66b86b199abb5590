package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Report is the outcome of a run. [Report.WriteText] prints it for
// people; encoding/json gives the document `unibus bench --json` prints,
// whose fields BENCHMARKS.md reads. A part that did not run has a nil
// result and an entry in Skipped.
type Report struct {
	// Server, NATSURL and AuthMode are the deployment measured; User the
	// caller; Size to Rate the options of the publish/subscribe runs.
	Server   string `json:"server"`
	NATSURL  string `json:"nats_url"`
	AuthMode string `json:"auth_mode"`
	User     string `json:"user"`
	Size     int    `json:"size"`
	Msgs     int    `json:"msgs"`
	Pub      int    `json:"pub"`
	Sub      int    `json:"sub"`
	Rate     int    `json:"rate"`
	// Room is the scratch room, deleted at the end of the run.
	Room     string `json:"room,omitempty"`
	RoomName string `json:"room_name,omitempty"`

	Raw *FlowResult `json:"raw,omitempty"`
	E2E *FlowResult `json:"e2e,omitempty"`
	// Ratio is e2e.msgs_per_s / raw.msgs_per_s.
	Ratio float64      `json:"ratio,omitempty"`
	API   *APIResult   `json:"api,omitempty"`
	Rekey *RekeyResult `json:"rekey,omitempty"`

	// Skipped are the parts not run, each with the reason.
	Skipped  map[string]string `json:"skipped,omitempty"`
	Cleanup  []string          `json:"cleanup,omitempty"`
	Warnings []string          `json:"warnings,omitempty"`
	// Error is why the run stopped early, if it did.
	Error string `json:"error,omitempty"`
}

// FlowResult is one publish/subscribe run.
type FlowResult struct {
	// Msgs were published; each of the subscribers should get all of them.
	Msgs int `json:"msgs"`
	// Delivered counts the messages the subscribers got, all together;
	// Lost those they did not get; Errors those they got but could not
	// read (end to end only).
	Delivered int64 `json:"delivered"`
	Lost      int64 `json:"lost"`
	Errors    int64 `json:"errors,omitempty"`
	// Seconds runs from the first publish to the last delivery.
	Seconds float64 `json:"seconds"`
	// MsgsPerS is the messages a subscriber gets per second (averaged
	// over the subscribers); MBPerS the same in payload megabytes (10^6).
	MsgsPerS float64 `json:"msgs_per_s"`
	MBPerS   float64 `json:"mb_per_s"`
	// PubMsgsPerS is the publishers' rate, all together.
	PubMsgsPerS float64 `json:"pub_msgs_per_s"`
	// Latency from the send time in the message to its delivery.
	P50ms float64 `json:"p50_ms"`
	P90ms float64 `json:"p90_ms"`
	P99ms float64 `json:"p99_ms"`
	Maxms float64 `json:"max_ms"`
	// ReadMsgsPerS (end to end only) is a fresh client's read of the whole
	// run back from history: the receive path (verify, decrypt) without
	// waiting for a publisher.
	ReadMsgsPerS float64 `json:"read_msgs_per_s,omitempty"`
}

// APIResult is the control-plane run.
type APIResult struct {
	Concurrency int      `json:"concurrency"`
	RoomList    *APICall `json:"room_list"`
	KeyFetch    *APICall `json:"key_fetch"`
}

// APICall is the run of one signed request.
type APICall struct {
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// RateLimited counts the errors that were the server's rate limit.
	RateLimited int64   `json:"rate_limited,omitempty"`
	Seconds     float64 `json:"seconds"`
	PerS        float64 `json:"per_s"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	Maxms       float64 `json:"max_ms"`
	FirstError  string  `json:"first_error,omitempty"`
}

// RekeyResult is the rekey run.
type RekeyResult struct {
	// Members of the room when it was rekeyed, the caller included.
	Members int `json:"members"`
	// Seconds runs from the SDK's Rekey call to the last member holding
	// the new key: SealUploadSeconds (refresh, seal a key per member,
	// upload) then FetchSeconds (every member taking its key: from the
	// delivery on NATS, or by a signed fetch from the API).
	Seconds           float64 `json:"seconds"`
	SealUploadSeconds float64 `json:"seal_upload_seconds"`
	FetchSeconds      float64 `json:"fetch_seconds"`
	Epoch             uint64  `json:"epoch"`
	// Delivery is how the members took their keys: "nats" (membershipd's
	// key deliveries, as the SDK takes them) or "api" (a signed fetch
	// each: on an enforcing bus this process may not read other users'
	// deliveries).
	Delivery string `json:"delivery"`
	// Delivered and Fetched count the members who took their key each way
	// (a member whose delivery did not come fetches it, as the SDK does).
	Delivered int `json:"delivered"`
	Fetched   int `json:"fetched"`
	// SetupSeconds registered the throwaway users and added them.
	SetupSeconds float64 `json:"setup_seconds"`
	// Simulated says how the other members were played.
	Simulated string `json:"simulated"`
}

// WriteText prints the report for people: a table per part, then what was
// skipped, the warnings, the clean-up and why the run stopped early.
func (rep *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "unibus bench against %s as %s (NATS %s, auth %s)\n", rep.Server, rep.User, rep.NATSURL, rep.AuthMode)
	if rep.Raw != nil || rep.E2E != nil {
		rate := "as fast as possible"
		if rep.Rate > 0 {
			rate = fmt.Sprintf("at %s msgs/s", count(float64(rep.Rate)))
		}
		fmt.Fprintf(&b, "\n%s messages of %s bytes, %d publisher(s), %d subscriber(s), %s\n", count(float64(rep.Msgs)), count(float64(rep.Size)), rep.Pub, rep.Sub, rate)
		rows := [][]string{}
		for _, f := range []struct {
			name string
			r    *FlowResult
		}{{"raw NATS", rep.Raw}, {"end to end", rep.E2E}} {
			if f.r == nil {
				continue
			}
			rows = append(rows, []string{f.name, count(f.r.MsgsPerS), fmt.Sprintf("%.1f", f.r.MBPerS), count(f.r.PubMsgsPerS),
				ms(f.r.P50ms), ms(f.r.P90ms), ms(f.r.P99ms), ms(f.r.Maxms), strconv.FormatInt(f.r.Lost, 10)})
		}
		var tb strings.Builder
		writeTable(&tb, []string{"", "MSGS/S", "MB/S", "PUB MSGS/S", "P50", "P90", "P99", "MAX", "LOST"}, rows)
		b.WriteString(indent(tb.String()))
		if rep.Ratio > 0 {
			fmt.Fprintf(&b, "  E2E/raw: %.3f (%.1f%% of raw NATS)\n", rep.Ratio, 100*rep.Ratio)
		}
		if rep.E2E != nil && rep.E2E.ReadMsgsPerS > 0 {
			fmt.Fprintf(&b, "  end to end, the run read back from history by one fresh client: %s msgs/s\n", count(rep.E2E.ReadMsgsPerS))
		}
	}
	if rep.API != nil {
		a := rep.API
		fmt.Fprintf(&b, "\nControl plane, %d signed requests at a time:\n", a.Concurrency)
		rows := [][]string{}
		for _, c := range []struct {
			name string
			c    *APICall
		}{{"room list", a.RoomList}, {"key fetch", a.KeyFetch}} {
			rows = append(rows, []string{c.name, count(c.c.PerS), count(float64(c.c.Requests)), ms(c.c.P50ms), ms(c.c.P99ms), ms(c.c.Maxms), strconv.FormatInt(c.c.Errors, 10)})
		}
		var tb strings.Builder
		writeTable(&tb, []string{"", "REQ/S", "REQUESTS", "P50", "P99", "MAX", "ERRORS"}, rows)
		b.WriteString(indent(tb.String()))
	}
	if k := rep.Rekey; k != nil {
		fmt.Fprintf(&b, "\nRekey of a room of %s members (epoch %d):\n", count(float64(k.Members)), k.Epoch)
		fmt.Fprintf(&b, "  reload, seal %s keys, upload   %.3f s\n", count(float64(k.Members)), k.SealUploadSeconds)
		switch k.Delivery {
		case "nats":
			fmt.Fprintf(&b, "  every member takes its key      %.3f s (%d from NATS deliveries, %d fetched from the API)\n", k.FetchSeconds, k.Delivered, k.Fetched)
		default:
			fmt.Fprintf(&b, "  every member fetches and opens  %.3f s\n", k.FetchSeconds)
		}
		fmt.Fprintf(&b, "  total                           %.3f s\n", k.Seconds)
		fmt.Fprintf(&b, "  (setup, not timed: %.1f s; %s)\n", k.SetupSeconds, k.Simulated)
	}
	if len(rep.Skipped) > 0 {
		b.WriteString("\n")
		for _, p := range parts() {
			if why, ok := rep.Skipped[p]; ok {
				fmt.Fprintf(&b, "skipped %s: %s\n", p, why)
			}
		}
	}
	if len(rep.Warnings) > 0 {
		b.WriteString("\n")
		for _, s := range rep.Warnings {
			fmt.Fprintf(&b, "warning: %s\n", s)
		}
	}
	if len(rep.Cleanup) > 0 {
		b.WriteString("\nCleanup:\n")
		for _, s := range rep.Cleanup {
			fmt.Fprintf(&b, "  %s\n", s)
		}
	}
	if rep.Error != "" {
		fmt.Fprintf(&b, "\nStopped early: %s\n", rep.Error)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if line != "" {
			b.WriteString("  " + strings.TrimRight(line, " \n") + "\n")
		}
	}
	return b.String()
}

// ms shows a latency in milliseconds.
func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	case v >= 1:
		return fmt.Sprintf("%.2fms", v)
	}
	return fmt.Sprintf("%.3fms", v)
}

// count shows a whole number with thousands separators: 123,456.
func count(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// writeTable prints a header and rows in aligned columns.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}
