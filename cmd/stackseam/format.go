package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// formatDuration writes d short and readable at every scale: 850ms, 12.3s,
// 1m35s, 2h5m, 3d4h. Precision drops as durations grow, since nobody cares
// about the seconds of a three-day-old stack.
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// formatTime writes a time in UTC to the second, the form every command
// prints.
func formatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

// ago writes how long before now t was.
func ago(now, t time.Time) string {
	return formatDuration(now.Sub(t)) + " ago"
}

// newTable returns a tabwriter for aligned columns separated by two spaces.
// Lines lose the padding of empty last columns, which would otherwise
// leave trailing spaces.
// printTable prints rows (tab-separated cells, one string each) under header as an aligned
// table on stdout, or the line none when there are no rows; it returns cmd's exit code.
func printTable(c *cli, cmd *command, none, header string, rows []string) int {
	if len(rows) == 0 {
		fmt.Fprintln(c.stdout, none)
		return exitOK
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, r)
	}
	if err := tw.Flush(); err != nil {
		return fail(c, cmd, err)
	}
	return exitOK
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(&trimWriter{w: w}, 0, 0, 2, ' ', 0)
}

// trimWriter drops the spaces at the end of each line written to it.
type trimWriter struct {
	w      io.Writer
	spaces int // spaces held back until we know whether the line goes on
}

func (t *trimWriter) Write(p []byte) (int, error) {
	var out []byte
	for _, b := range p {
		switch b {
		case ' ':
			t.spaces++
			continue
		case '\n':
			t.spaces = 0
		default:
			for ; t.spaces > 0; t.spaces-- {
				out = append(out, ' ')
			}
		}
		out = append(out, b)
	}
	if _, err := t.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// formatMetadata writes a flat map as k=v pairs in key order, on one line: keys and values
// printable, a null value (an event removing the key) as null.
func formatMetadata(m map[string]any) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = printable(k) + "=" + formatValue(m[k])
	}
	return strings.Join(parts, " ")
}

// formatValue writes one metadata value as it is, control characters escaped.
func formatValue(v any) string {
	if v == nil {
		return "null"
	}
	return printable(fmt.Sprint(v))
}

// oneLine shortens text to its first line and at most max characters, for
// table cells; the full text is printed elsewhere. Control characters are escaped.
func oneLine(text string, max int) string {
	text = strings.TrimSpace(text)
	if i := strings.IndexByte(text, '\n'); i >= 0 {
		text = text[:i] + " …"
	}
	if r := []rune(text); len(r) > max {
		text = string(r[:max-1]) + "…"
	}
	return printable(text)
}
