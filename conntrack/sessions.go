package conntrack

import (
	"context"
	"slices"
)

// A Session is an FTP control connection that a helper follows, with the
// data connections it expected and the kernel admitted (RELATED), and the
// expectations it has still pending.
type Session struct {
	// Control is the control connection's original tuple: client to
	// server.
	Control      Tuple            `json:"control"`
	Helper       string           `json:"helper"`
	Data         []DataConnection `json:"data"`
	Expectations []Expectation    `json:"expectations"`
}

// A DataConnection is a data connection of a session.
type DataConnection struct {
	// Flow is its original tuple.
	Flow Tuple `json:"flow"`
	// Mode is "passive" when the client opened it, "active" when the
	// server did.
	Mode string `json:"mode"`
	// Packets and Bytes count both ways; PacketsOrig and BytesOrig the
	// way Flow goes, PacketsReply and BytesReply back. All are 0 unless
	// conntrack counts them (net.netfilter.nf_conntrack_acct=1).
	Packets      uint64 `json:"packets"`
	Bytes        uint64 `json:"bytes"`
	PacketsOrig  uint64 `json:"packets_orig"`
	BytesOrig    uint64 `json:"bytes_orig"`
	PacketsReply uint64 `json:"packets_reply"`
	BytesReply   uint64 `json:"bytes_reply"`
}

// Sessions returns the FTP sessions of the namespace, in the order of
// their control connections. Only sessions of the helper that WithHelper
// names (by default "ftp") are listed; "" lists every helper's.
func Sessions(ctx context.Context, opts ...Option) ([]Session, error) {
	o := collect(opts)
	k, err := open(o)
	if err != nil {
		return nil, err
	}
	defer k.close()
	flows, err := k.flows()
	if err != nil {
		return nil, &Error{Op: "list connections", Err: unsupported(err)}
	}
	byControl := map[Tuple]*Session{}
	var out []*Session
	for _, f := range flows {
		if f.helper != "" && keeps(o.helper, f.helper) {
			s := &Session{Control: f.orig, Helper: f.helper, Data: []DataConnection{}, Expectations: []Expectation{}}
			byControl[f.orig] = s
			out = append(out, s)
		}
	}
	for _, f := range flows {
		s, ok := byControl[f.master]
		if !f.related || !ok {
			continue
		}
		mode := "active"
		if f.orig.Src == s.Control.Src {
			mode = "passive"
		}
		s.Data = append(s.Data, DataConnection{Flow: f.orig, Mode: mode,
			Packets: f.packetsOrig + f.packetsReply, Bytes: f.bytesOrig + f.bytesReply,
			PacketsOrig: f.packetsOrig, BytesOrig: f.bytesOrig, PacketsReply: f.packetsReply, BytesReply: f.bytesReply})
	}
	if err := each(ctx, k, o.helper, func(x Expectation) {
		if s, ok := byControl[x.Master]; ok {
			s.Expectations = append(s.Expectations, x)
		}
	}); err != nil {
		return nil, err
	}
	sessions := make([]Session, len(out))
	for i, s := range out {
		slices.SortFunc(s.Data, func(a, b DataConnection) int { return a.Flow.compare(b.Flow) })
		sessions[i] = *s
	}
	slices.SortFunc(sessions, func(a, b Session) int { return a.Control.compare(b.Control) })
	return sessions, nil
}
