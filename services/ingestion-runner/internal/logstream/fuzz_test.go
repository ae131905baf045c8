package logstream

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/redact"
)

// FuzzRedactedLines writes a command's output, which holds two configured
// secrets, to a LineWriter in arbitrary writes, and checks the lines as
// Streamer.Line sends them (redacted, then made valid UTF-8): no secret
// shows in the output, not inside one line and not across the pieces of a
// long line split in two. The splitter itself loses nothing: the pieces
// and the line ends are the output, each piece within max plus the
// hold-back and without a newline.
//
// Whitespace-only values are not masked, and a value holding the mask's
// '*' or U+FFFD can be spelled by the mask or by a replaced byte, so those
// are masked but not looked for.
func FuzzRedactedLines(f *testing.F) {
	f.Add("SECRET", "tok", "0123456", "789abcdefghijklmnop\n", "\n", []byte{9, 4, 200}, uint8(7))
	f.Add("aé", "x", "", "\xa9\xa9", "", []byte{1, 2, 3}, uint8(0))
	f.Add("aé", "x", "", "\xa9\xa9", "", []byte{}, uint8(2))
	f.Add("multi\nline", "a\r\nb", "pre\r\n", "", "\r", []byte{}, uint8(2))
	f.Add("ab", "ba", "abab", "aba", "bab", []byte{1}, uint8(1))
	f.Add("  ", "****", "", "", "", []byte{0, 0, 5}, uint8(3))
	f.Add("é", "\xff", "aaa", "\xc3", "\xa9", []byte{31}, uint8(3))
	f.Add("a", "b", "cd", "", "", []byte{2, 2}, uint8(3))

	f.Fuzz(func(t *testing.T, s1, s2, pre, mid, post string, writes []byte, maxByte uint8) {
		maxLine := 1 + int(maxByte)%48
		r := redact.New(s1, s2)
		input := pre + s1 + mid + s2 + s1 + post

		var pieces []string
		w := NewLineWriter(func(l string) { pieces = append(pieces, l) }, maxLine, r)
		rest := input
		for _, c := range writes {
			n := min(int(c)%32, len(rest))
			written, err := w.Write([]byte(rest[:n]))
			require.NoError(t, err)
			require.Equal(t, n, written)
			rest = rest[n:]
		}
		_, err := w.Write([]byte(rest))
		require.NoError(t, err)
		require.NoError(t, w.Close())

		// Align the pieces on the input to find the line ends.
		var lines []string
		line, pos := "", 0
		limit := maxLine + max(r.MaxLen()-1, 0)
		for i, p := range pieces {
			require.NotContains(t, p, "\n")
			require.LessOrEqual(t, len(p), limit, "piece %d", i)
			require.True(t, strings.HasPrefix(input[pos:], p), "piece %d %q is the output at %d", i, p, pos)
			pos += len(p)
			// What Streamer.Line sends.
			line += strings.ToValidUTF8(r.Redact(p), "\uFFFD")
			end := ""
			switch {
			case strings.HasPrefix(input[pos:], "\r\n"):
				end = "\r\n"
			case strings.HasPrefix(input[pos:], "\n"):
				end = "\n"
			case i == len(pieces)-1 && input[pos:] == "\r":
				end = "\r"
			}
			if end != "" || i == len(pieces)-1 {
				pos += len(end)
				lines = append(lines, line)
				line = ""
			}
		}
		require.Equal(t, len(input), pos, "the pieces and line ends are the whole output")

		out := strings.Join(lines, "\n")
		for _, s := range []string{s1, s2} {
			if strings.TrimSpace(s) == "" || strings.ContainsAny(s, "*\uFFFD") {
				continue
			}
			require.NotContains(t, out, s, "a secret shows in the output")
		}
	})
}
