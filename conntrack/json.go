package conntrack

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"strconv"
)

// Expectations are encoded to JSON here rather than by encoding/json's
// reflection, which took longer than the kernel's dump for a listing of
// thousands (docs/BENCHMARKS.md). The encoding is byte for byte what
// encoding/json makes of the struct tags; a test holds them equal.

// MarshalJSON encodes x as encoding/json would encode its fields.
func (x Expectation) MarshalJSON() ([]byte, error) {
	return x.appendJSON(make([]byte, 0, 512)), nil
}

// WriteJSON writes the live expectations that [List] would return to w, as
// one JSON array and a newline, each as its message arrives from the kernel:
// in the kernel's order, not sorted, so that memory does not grow with
// their number (List holds them all to sort them). Each is encoded as
// json.Marshal encodes an Expectation. On an error w may hold part of the
// array.
// Ending ctx ends the dump.
func WriteJSON(ctx context.Context, w io.Writer, opts ...Option) error {
	o := collect(opts)
	k, err := open(o)
	if err != nil {
		return err
	}
	defer k.close()
	a := newArray(w)
	if err := each(ctx, k, o.helper, a.add); err != nil {
		return err
	}
	return a.close()
}

// array writes a JSON array of expectations, one at a time.
type array struct {
	bw *bufio.Writer
	b  []byte
	n  int
}

func newArray(w io.Writer) *array {
	a := &array{bw: bufio.NewWriterSize(w, 64<<10), b: make([]byte, 0, 512)}
	a.bw.WriteByte('[')
	return a
}

func (a *array) add(x Expectation) {
	a.b = a.b[:0]
	if a.n > 0 {
		a.b = append(a.b, ',')
	}
	a.n++
	a.b = x.appendJSON(a.b) // kept: the buffer grows once to the longest object, not per object
	a.bw.Write(a.b)
}

// close ends the array and flushes it.
func (a *array) close() error {
	a.bw.WriteString("]\n")
	return a.bw.Flush()
}

func (x *Expectation) appendJSON(b []byte) []byte {
	return x.appendFields(append(b, '{'))
}

// appendFields appends x's fields and the closing brace.
func (x *Expectation) appendFields(b []byte) []byte {
	b = strconv.AppendUint(append(b, `"id":`...), uint64(x.ID), 10)
	b = appendString(append(b, `,"helper":`...), x.Helper)
	b = appendString(append(b, `,"proto":`...), x.Proto)
	b = strconv.AppendUint(append(b, `,"timeout":`...), uint64(x.Timeout), 10)
	b = x.Master.appendJSON(append(b, `,"master":`...))
	b = x.Expected.appendJSON(append(b, `,"expected":`...))
	b = x.Mask.appendJSON(append(b, `,"mask":`...))
	b = strconv.AppendUint(append(b, `,"zone":`...), uint64(x.Zone), 10)
	b = strconv.AppendUint(append(b, `,"class":`...), uint64(x.Class), 10)
	b = append(b, `,"flags":`...)
	if x.Flags == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, f := range x.Flags {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, f)
		}
		b = append(b, ']')
	}
	if x.NAT != nil {
		b = appendString(append(b, `,"nat":{"dir":`...), x.NAT.Dir)
		b = append(x.NAT.Tuple.appendJSON(append(b, `,"tuple":`...)), '}')
	}
	return append(b, '}')
}

func (t Tuple) appendJSON(b []byte) []byte {
	b = appendAddr(append(b, `{"src":`...), t.Src)
	b = appendAddr(append(b, `,"dst":`...), t.Dst)
	b = strconv.AppendUint(append(b, `,"sport":`...), uint64(t.SPort), 10)
	b = strconv.AppendUint(append(b, `,"dport":`...), uint64(t.DPort), 10)
	return append(b, '}')
}

// appendAddr appends a as netip.Addr's MarshalText does, quoted: "" for the
// zero Addr. A zone, which the kernel never sends, is quoted as a string.
func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Zone() != "" {
		return appendString(b, a.String())
	}
	return append(a.AppendTo(append(b, '"')), '"')
}

// appendString appends s as a JSON string. Strings that encoding/json
// would escape (quotes, backslashes, control characters, <, >, &, and
// anything not ASCII) are left to it.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	return append(append(append(b, '"'), s...), '"')
}
