package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"golang.org/x/term"

	"github.com/enmanuel/unibus/pkg/identity"
)

// timeLayout is how human output shows times, in local time.
const timeLayout = "2006-01-02 15:04:05"

// writeJSON prints v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
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

// humanSize writes n bytes in binary units: 512 B, 1.5 KiB, 3.0 MiB.
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// localTime shows t in local time, or "-" when it is unknown.
func localTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(timeLayout)
}

// printName is how human output shows a name received from the server
// (of a user, a room, a sender, a file): with every control, bidi or
// invisible character escaped as Go writes it (identity.Printable), so
// that no name, even one stored before the server refused them, can
// move the cursor, reorder the line or hide part of itself.
func printName(s string) string { return identity.Printable(s) }

// clean makes text from other users safe to print on a terminal: control
// characters other than newline and tab (escape sequences among them)
// become U+FFFD.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || !unicode.IsControl(r) {
			return r
		}
		return unicode.ReplacementChar
	}, s)
}

// isTerminal reports whether f (a writer or reader) is a terminal.
func isTerminal(v any) bool {
	f, ok := v.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressBar draws a transfer's progress on one terminal line.
type progressBar struct {
	w     io.Writer
	label string
	last  time.Time // when it was last drawn
	shown int64     // the count last drawn
	drawn bool
}

// newProgressBar returns a bar drawing on w, or nil when w is not a
// terminal: progress never goes into a pipe or a file.
func newProgressBar(w io.Writer, label string) *progressBar {
	if !isTerminal(w) {
		return nil
	}
	return &progressBar{w: w, label: label}
}

// progressFunc returns the bar's update function, nil for a nil bar, in the
// form the SDK takes.
func (p *progressBar) progressFunc() func(done, total int64) {
	if p == nil {
		return nil
	}
	return p.update
}

// barWidth is the number of cells of the bar itself.
const barWidth = 30

func (p *progressBar) update(done, total int64) {
	now := time.Now()
	if p.drawn && (done == p.shown || done != total && now.Sub(p.last) < 100*time.Millisecond) {
		return
	}
	p.last, p.shown, p.drawn = now, done, true
	if total <= 0 {
		fmt.Fprintf(p.w, "\r\x1b[K%s %s", p.label, humanSize(done))
		return
	}
	done = min(done, total)
	filled := int(done * barWidth / total)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", barWidth-filled)
	fmt.Fprintf(p.w, "\r\x1b[K%s [%s] %3d%% %s / %s", p.label, bar, done*100/total, humanSize(done), humanSize(total))
}

// finish ends the bar's line, if it drew one. Calling it again does
// nothing.
func (p *progressBar) finish() {
	if p != nil && p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}
