package nlio

import (
	"encoding/binary"
	"errors"
	"reflect"
	"slices"
	"syscall"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// attr encodes one netlink attribute, padded unless unpadded.
func attr(typ uint16, data string, unpadded bool) []byte {
	b := binary.NativeEndian.AppendUint16(nil, uint16(unix.NLA_HDRLEN+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for !unpadded && len(b)%unix.NLA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

func TestEachAttr(t *testing.T) {
	type seen struct {
		Typ  uint16
		Data string
	}
	walk := func(b []byte) ([]seen, error) {
		var got []seen
		err := EachAttr(b, func(typ uint16, data []byte) error {
			got = append(got, seen{typ, string(data)})
			return nil
		})
		return got, err
	}
	// Padding is skipped, flags are stripped, and the last attribute may
	// lack its padding.
	good := slices.Concat(attr(1, "abc", false), attr(2|unix.NLA_F_NESTED, "", false), attr(3|unix.NLA_F_NET_BYTEORDER, "hello", true))
	got, err := walk(good)
	if want := []seen{{1, "abc"}, {2, ""}, {3, "hello"}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("EachAttr = %v, %v; want %v", got, err, want)
	}
	if got, err := walk(nil); err != nil || got != nil {
		t.Fatalf("no attributes: %v, %v", got, err)
	}

	for name, b := range map[string][]byte{
		"length past the end":   attr(1, "abc", false)[:6],
		"length below a header": {2, 0, 1, 0},
		"partial header at end": slices.Concat(attr(1, "abcd", false), []byte{8, 0}),
	} {
		got, err := walk(b)
		if err == nil {
			t.Errorf("%s: %v, no error", name, got)
		}
	}

	stop := errors.New("stop")
	calls := 0
	err = EachAttr(good, func(uint16, []byte) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("f's error: %v after %d calls; want it after 1", err, calls)
	}
}

func TestErrno(t *testing.T) {
	code := func(c int32) []byte { return binary.NativeEndian.AppendUint32(nil, uint32(c)) }
	for _, tt := range []struct {
		typ  netlink.HeaderType
		data []byte
		want syscall.Errno
		ok   bool
	}{
		{netlink.Error, code(0), 0, true},
		{netlink.Error, code(-int32(syscall.ENOENT)), syscall.ENOENT, true},
		{netlink.Done, code(0), 0, true},
		{netlink.Done, code(-int32(syscall.EINTR)), syscall.EINTR, true},
		{netlink.Error, []byte{1, 2}, 0, false},
		{netlink.Done, nil, 0, false},
		{netlink.Noop + 100, code(-1), 0, false},
	} {
		got, ok := Errno(netlink.Message{Header: netlink.Header{Type: tt.typ}, Data: tt.data})
		if got != tt.want || ok != tt.ok {
			t.Errorf("Errno(type %d, %x) = %v, %t; want %v, %t", tt.typ, tt.data, got, ok, tt.want, tt.ok)
		}
	}
}
