package input

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"
)

// special makes a file of kind k (modulo the kinds) holding content where
// it can, and returns its path and whether it is a regular file.
func special(t testing.TB, k uint8, content []byte) (path string, regular bool) {
	dir := t.TempDir()
	path = filepath.Join(dir, "input")
	switch k % 6 {
	case 0:
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		return path, true
	case 1: // a symbolic link to a regular file is read as the file
		if err := os.WriteFile(path+".real", content, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(path+".real", path); err != nil {
			t.Fatal(err)
		}
		return path, true
	case 2: // a FIFO without a writer: opening it must not block
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
	case 3: // a device that never ends
		if err := os.Symlink("/dev/zero", path); err != nil {
			t.Fatal(err)
		}
	case 4:
		return dir, false
	case 5: // a unix socket
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Close(fd) })
		if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
			t.Skip("cannot bind a unix socket here:", err)
		}
	}
	return path, false
}

// FuzzReadFile reads regular and special files of any content against any
// limit: a regular file comes back byte for byte when it fits and is
// refused as too large when it does not; anything else is refused as not a
// regular file, at once.
func FuzzReadFile(f *testing.F) {
	f.Add([]byte("192.0.2.0/24\n"), uint16(100), uint8(0))
	f.Add([]byte("ports: [21]\n"), uint16(5), uint8(1))
	f.Add([]byte{}, uint16(0), uint8(2))
	f.Add([]byte("x"), uint16(1), uint8(3))
	f.Add([]byte("x"), uint16(1), uint8(4))
	f.Add([]byte("x"), uint16(1), uint8(5))
	f.Fuzz(func(t *testing.T, content []byte, limit uint16, kind uint8) {
		path, regular := special(t, kind, content)
		b, err := ReadFile(path, int64(limit))
		switch {
		case !regular:
			if !errors.Is(err, ErrNotRegular) || b != nil {
				t.Fatalf("kind %d: %d bytes, %v; want ErrNotRegular", kind%6, len(b), err)
			}
		case len(content) > int(limit):
			if !errors.Is(err, ErrTooLarge) || b != nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("%d bytes over a limit of %d: %d bytes, %v", len(content), limit, len(b), err)
			}
		case err != nil || !bytes.Equal(b, content):
			t.Fatalf("%d bytes within a limit of %d: %q, %v", len(content), limit, b, err)
		}
	})
}

func TestReadFileMissing(t *testing.T) {
	_, err := ReadFile(filepath.Join(t.TempDir(), "nope"), 10)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v, want os.ErrNotExist", err)
	}
}

// A file that reports size 0 but has more (as /proc files do) is still
// bounded while it is read.
func TestReadFileProc(t *testing.T) {
	b, err := ReadFile("/proc/self/status", 1<<20)
	if err != nil || !bytes.Contains(b, []byte("Name:")) {
		t.Fatalf("/proc/self/status: %q, %v", b, err)
	}
	if _, err := ReadFile("/proc/self/status", 10); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("/proc/self/status within 10 bytes: %v, want ErrTooLarge", err)
	}
}

func TestQuote(t *testing.T) {
	if got := Quote("eth0"); got != `"eth0"` {
		t.Errorf("Quote(eth0) = %s", got)
	}
	long := strings.Repeat("é", 200) // 400 bytes, 2 each
	got := Quote(long)
	if !strings.HasSuffix(got, "… (400 bytes)") || len(got) > MaxQuoted+30 || !utf8.ValidString(got) {
		t.Errorf("Quote of 400 bytes = %s", got)
	}
	if got := Quote(strings.Repeat("x", MaxQuoted)); strings.Contains(got, "bytes") {
		t.Errorf("Quote of exactly %d bytes was cut: %s", MaxQuoted, got)
	}
}
