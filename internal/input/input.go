package input

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// ErrNotRegular reports an input file that is not a regular file: a FIFO,
// a device such as /dev/zero, a directory or a socket.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge reports an input file larger than its limit.
var ErrTooLarge = errors.New("file too large")

// ReadFile reads the regular file at path, of at most limit bytes. Anything
// else fails at once, before a byte is read: a FIFO (it is opened without
// blocking, so one without a writer cannot hang the caller), a device (whose
// reads may never end), a directory; and a file larger than limit, also one
// that grows past it while it is read. Errors name the path.
func ReadFile(path string, limit int64) ([]byte, error) {
	// What the path is, before opening it (a socket cannot be opened), and
	// again after (it may have been replaced in between).
	name := Clip(path) // for messages: a path may be 4 KiB
	st, err := os.Stat(path)
	if err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (%s)", name, ErrNotRegular, Kind(st.Mode()))
	}
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, &os.PathError{Op: pe.Op, Path: name, Err: pe.Err}
		}
		return nil, err
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (%s)", name, ErrNotRegular, Kind(st.Mode()))
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s: %w: %d bytes, the limit is %d", name, ErrTooLarge, st.Size(), limit)
	}
	// Files in /proc report size 0: the limit holds while reading too.
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: more than the limit of %d bytes", name, ErrTooLarge, limit)
	}
	return b, nil
}

// Kind names the kind of file of mode m, for error messages: "a FIFO".
func Kind(m os.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	}
	return "special"
}

// MaxQuoted is how many bytes of a bad value an error message repeats.
const MaxQuoted = 100

// Clip returns s unquoted (a path, say), cut after MaxQuoted bytes as
// Quote cuts.
func Clip(s string) string {
	h, cut := head(s)
	if !cut {
		return s
	}
	return fmt.Sprintf("%s… (%d bytes)", h, len(s))
}

// Quote returns s as a Go-quoted string, as %q prints it, cut after
// MaxQuoted bytes (at a character boundary) with a note of the full
// length: an error about a 5 MB line says so in a line.
func Quote(s string) string {
	h, cut := head(s)
	if !cut {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(h), len(s))
}

// head returns s's first MaxQuoted bytes, fewer where that would split a
// character, and whether they are less than s.
func head(s string) (string, bool) {
	if len(s) <= MaxQuoted {
		return s, false
	}
	cut := MaxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], true
}
