package main

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// consoleWidth is the width, in columns, of everything the simulator prints
// for people (progress, events, the text report) unless -wide is given. The
// progress line and the text report's tables are laid out to fit it; free
// text (events, faults, notes) is wrapped to it.
const consoleWidth = 120

// wrapWriter wraps the lines written through it to width columns, breaking
// at spaces; continuation lines are indented four columns past the line's
// own indentation. A word longer than a line is not broken, nor is the
// summary line, which scripts read as one line. Each Write must
// hold whole lines (as every fmt.Fprint* call here does); a tail without a
// newline is written as it is. It is safe for concurrent use.
type wrapWriter struct {
	mu    sync.Mutex
	out   io.Writer
	width int
}

func newWrapWriter(out io.Writer, width int) *wrapWriter {
	return &wrapWriter{out: out, width: width}
}

func (w *wrapWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b bytes.Buffer
	text := string(p)
	for text != "" {
		line, rest, newline := strings.Cut(text, "\n")
		b.WriteString(wrap(line, w.width))
		if newline {
			b.WriteByte('\n')
		}
		text = rest
	}
	if _, err := w.out.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// wrap breaks line at spaces into lines of at most width columns (bytes:
// the simulator prints ASCII), joined by newlines; see wrapWriter. Runs of
// spaces inside a line (a table's alignment) are kept, except where the
// line breaks.
func wrap(line string, width int) string {
	if width <= 0 || len(line) <= width || strings.HasPrefix(line, "summary: ") {
		return line
	}
	body := strings.TrimLeft(line, " ")
	lead := line[:len(line)-len(body)]
	indent := lead + "    "
	var b strings.Builder
	current := lead
	fresh := true // nothing on the current line yet but its indentation
	for _, word := range strings.Split(body, " ") {
		switch {
		case fresh && word == "":
			// spaces where the line broke
		case fresh:
			current += word
			fresh = false
		case len(current)+1+len(word) <= width:
			current += " " + word
		default:
			b.WriteString(strings.TrimRight(current, " "))
			b.WriteByte('\n')
			current, fresh = indent+word, word == ""
		}
	}
	b.WriteString(current)
	return b.String()
}
