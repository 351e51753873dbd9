package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/internal/nlio"
)

// Tracing FTP through every table. A temporary table of ftpnft's marks
// packets with "meta nftrace set 1"; from then on every base chain they
// pass, in any table and family, reports them to listeners of the
// NFNLGRP_NFTRACE group (NFT_MSG_TRACE, which google/nftables does not
// decode). What the control channel says is payload, which trace events do
// not carry: the same table copies control connections' packets to
// userspace with "log group" (nfnetlink_log), which needs no capture
// socket, works in any namespace, and copies only what the rules select.

// TraceTable is the name of the temporary table that Trace creates.
const TraceTable = "ftpnft-trace"

// TraceLogGroup is the nfnetlink_log group that the trace table copies
// control connections' packets to.
const TraceLogGroup = 4742

// traceRuleset builds the trace table for control ports: in prerouting and
// output, below every other chain (-301, before conntrack), the control
// connections' packets are traced and copied; after conntrack (-150), the
// RELATED packets of connections with the ftp helper and the first packet
// of new connections to unprivileged ports, among which are the data
// connections the helper did not expect, are traced.
func traceRuleset(ports []uint16) *Ruleset {
	rs := &Ruleset{Table: TraceTable}
	for _, hook := range []string{"prerouting", "output"} {
		control := Chain{Name: "control-" + hook, Type: typeFilter, Hook: hook, Priority: -301, Policy: PolicyAccept}
		for _, p := range ports {
			control.Rules = append(control.Rules,
				rule(fmt.Sprintf("trace control port %d", p), dport{"tcp", p}, nftraceSet{}, logGroup{TraceLogGroup}),
				rule(fmt.Sprintf("trace control port %d replies", p), sport{"tcp", p}, nftraceSet{}, logGroup{TraceLogGroup}))
		}
		data := Chain{Name: "data-" + hook, Type: typeFilter, Hook: hook, Priority: -150, Policy: PolicyAccept}
		data.Rules = []Rule{
			rule("trace related ftp data", ctState{stateRelated}, ctHelperIs{"ftp"}, nftraceSet{}),
			rule("trace new data connections", tcpSYN{}, ctState{stateNew}, dportRange{"tcp", PortRange{1024, 65535}}, nftraceSet{}),
		}
		rs.Chains = append(rs.Chains, control, data)
	}
	return rs
}

// TraceEvent is one step of a traced packet: a rule that matched, or a
// chain's policy, or a return from a chain.
type TraceEvent struct {
	ID      uint32 `json:"id"` // the packet: its events share it
	Family  string `json:"family"`
	Table   string `json:"table"`
	Chain   string `json:"chain"`
	Handle  uint64 `json:"handle,omitempty"` // of the rule, for kind "rule"
	Kind    string `json:"kind"`             // "rule", "policy", "return"
	Verdict string `json:"verdict"`          // accept, drop, continue, jump, goto, return, break
	Target  string `json:"target,omitempty"` // of a jump or goto
	// CtState is the packet's conntrack state ("new", "related", ...),
	// when the kernel reports it (Linux 6.16 and later).
	CtState string `json:"ct_state,omitempty"`
	Packet
}

// Packet is what a trace event or a log copy says of a packet.
type Packet struct {
	Src   netip.Addr `json:"src"`
	Dst   netip.Addr `json:"dst"`
	SPort uint16     `json:"sport"`
	DPort uint16     `json:"dport"`
	// SYN and ACK are the TCP flags of that name.
	SYN bool `json:"syn"`
	ACK bool `json:"ack"`
	// Payload is the TCP payload, in log copies only.
	Payload []byte `json:"-"`
}

// TraceHandler receives what a trace sees, on Trace's goroutine.
type TraceHandler struct {
	Event func(TraceEvent) // a traced packet's step
	Log   func(Packet)     // a copy of a control connection's packet
}

// Trace traces FTP's packets until ctx ends: it creates the trace table
// for the control ports, reports every trace event and every copy of a
// control connection's packet to h, and removes the table again when it
// returns, whatever ended it (ctx, an error, the namespace gone). ready,
// when not nil, is called once the table is in place and the listeners
// listen.
func Trace(ctx context.Context, ports []uint16, h TraceHandler, ready func(), opts ...Option) (err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.dial != nil {
		return &Error{Op: "trace", Err: errors.ErrUnsupported} // a fake kernel sends no events
	}
	// Two listening sockets of its own; the table goes through Apply's.
	fd, _, release, err := o.netns.Open()
	if err != nil {
		return &Error{Op: "open netns", Err: err}
	}
	defer release()
	events, err := nlio.DialNetfilter(fd)
	if err != nil {
		return &Error{Op: "trace", Err: classify(err)}
	}
	defer events.Close()
	// A packet's path is a burst of events: room for thousands of them.
	if err := events.SetReadBuffer(socketBuffer); err != nil {
		return &Error{Op: "trace", Err: classify(err)}
	}
	if err := events.JoinGroup(unix.NFNLGRP_NFTRACE); err != nil {
		return &Error{Op: "listen for trace events", Err: classify(err)}
	}
	logs, err := nlio.DialNetfilter(fd)
	if err != nil {
		return &Error{Op: "trace", Err: classify(err)}
	}
	defer logs.Close()
	if err := bindLog(logs, TraceLogGroup); err != nil {
		return &Error{Op: "bind nfnetlink_log group", Err: classify(err)}
	}

	rs := traceRuleset(ports)
	if _, err := Apply(ctx, rs, opts...); err != nil {
		return err
	}
	defer func() {
		// Removed with a context of its own: ctx has ended by now.
		if _, rerr := Remove(context.Background(), TraceTable, opts...); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if ready != nil {
		ready()
	}

	type received struct {
		ms   []netlink.Message
		err  error
		logs bool
	}
	got := make(chan received)
	stop := make(chan struct{})
	defer close(stop)
	for _, s := range []struct {
		nc   *netlink.Conn
		logs bool
	}{{events, false}, {logs, true}} {
		go func() {
			for {
				ms, err := s.nc.Receive()
				select {
				case got <- received{ms, err, s.logs}:
				case <-stop:
					return
				}
				if err != nil {
					return
				}
			}
		}()
	}
	// Closing the sockets ends the receivers when ctx ends.
	stopClosing := context.AfterFunc(ctx, func() { events.Close(); logs.Close() })
	defer stopClosing()
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-got:
			if r.err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if errors.Is(r.err, syscall.ENOBUFS) {
					continue // events were lost; the story goes on with what comes
				}
				return &Error{Op: "trace", Err: r.err}
			}
			for _, m := range r.ms {
				if r.logs {
					if p, ok := decodeLog(m); ok && h.Log != nil {
						h.Log(p)
					}
				} else if ev, ok := decodeTrace(m); ok && h.Event != nil {
					h.Event(ev)
				}
			}
		}
	}
}

// nfnetlink_log (linux/netfilter/nfnetlink_log.h), which x/sys lacks.
const (
	nfulnlMsgPacket   = 0
	nfulnlMsgConfig   = 1
	nfulaPayload      = 9
	nfulaCfgCmd       = 1
	nfulaCfgMode      = 2
	nfulaCfgTimeout   = 4
	nfulaCfgQThresh   = 5
	nfulnlCfgCmdBind  = 1
	nfulnlCopyPacket  = 2
	traceCopyRange    = 1500
	nftaTraceCtState  = 21 // NFTA_TRACE_CT_STATE, Linux 6.16
	traceTypePolicy   = 1  // NFT_TRACETYPE_POLICY
	traceTypeReturn   = 2  // NFT_TRACETYPE_RETURN
	traceTypeRule     = 3  // NFT_TRACETYPE_RULE
	nftaVerdictCode   = 1  // NFTA_VERDICT_CODE
	nftaVerdictChain  = 2  // NFTA_VERDICT_CHAIN
	nfprotoIPv6       = unix.NFPROTO_IPV6
	tcpFlagsSYN, tcpA = 0x02, 0x10
)

// bindLog binds nc to an nfnetlink_log group, copying whole packets (up to
// traceCopyRange bytes).
func bindLog(nc *netlink.Conn, group uint16) error {
	data := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0}
	data = binary.BigEndian.AppendUint16(data, group)
	data = nlio.AppendAttr(data, nfulaCfgCmd, []byte{nfulnlCfgCmdBind})
	mode := binary.BigEndian.AppendUint32(nil, traceCopyRange)
	data = nlio.AppendAttr(data, nfulaCfgMode, append(mode, nfulnlCopyPacket, 0))
	// Each copy at once: by default the kernel gathers them for up to a
	// second, and the story would tell a data connection before the reply
	// that named it.
	data = nlio.AppendAttr(data, nfulaCfgTimeout, make([]byte, 4))
	data = nlio.AppendAttr(data, nfulaCfgQThresh, binary.BigEndian.AppendUint32(nil, 1))
	_, err := nc.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_ULOG<<8 | nfulnlMsgConfig),
			Flags: netlink.Request | netlink.Acknowledge,
		},
		Data: data,
	})
	return err
}

// decodeLog decodes an nfnetlink_log packet message: the IP packet copied.
func decodeLog(m netlink.Message) (Packet, bool) {
	if uint16(m.Header.Type) != unix.NFNL_SUBSYS_ULOG<<8|nfulnlMsgPacket {
		return Packet{}, false
	}
	payload := nlio.Attr(m, nfulaPayload)
	if payload == nil {
		return Packet{}, false
	}
	return decodePacket(m.Data[0] == unix.AF_INET6, payload, true)
}

// decodePacket reads addresses, ports and TCP flags from an IP packet (or
// its headers), and with withPayload the TCP payload.
func decodePacket(v6 bool, b []byte, withPayload bool) (Packet, bool) {
	var p Packet
	var l4 []byte
	switch {
	case !v6 && len(b) >= 20 && b[0]>>4 == 4:
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl || b[9] != unix.IPPROTO_TCP {
			return p, false
		}
		p.Src, _ = netip.AddrFromSlice(b[12:16])
		p.Dst, _ = netip.AddrFromSlice(b[16:20])
		l4 = b[ihl:]
		if total := int(binary.BigEndian.Uint16(b[2:4])); withPayload && total <= len(b) && total >= ihl {
			l4 = b[ihl:total]
		}
	case v6 && len(b) >= 40 && b[0]>>4 == 6:
		if b[6] != unix.IPPROTO_TCP {
			return p, false // extension headers are not followed
		}
		p.Src, _ = netip.AddrFromSlice(b[8:24])
		p.Dst, _ = netip.AddrFromSlice(b[24:40])
		l4 = b[40:]
	default:
		return p, false
	}
	p, ok := decodeTCP(p, l4, withPayload)
	return p, ok
}

// decodeTCP reads ports and flags from a TCP header, and the payload.
func decodeTCP(p Packet, l4 []byte, withPayload bool) (Packet, bool) {
	if len(l4) < 14 {
		return p, false
	}
	p.SPort = binary.BigEndian.Uint16(l4[0:2])
	p.DPort = binary.BigEndian.Uint16(l4[2:4])
	p.SYN = l4[13]&tcpFlagsSYN != 0
	p.ACK = l4[13]&tcpA != 0
	if withPayload && len(l4) >= 20 {
		if off := int(l4[12]>>4) * 4; off >= 20 && off <= len(l4) {
			p.Payload = append([]byte(nil), l4[off:]...)
		}
	}
	return p, true
}

// decodeTrace decodes an NFT_MSG_TRACE event.
func decodeTrace(m netlink.Message) (TraceEvent, bool) {
	if uint16(m.Header.Type) != unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_TRACE || len(m.Data) < 4 {
		return TraceEvent{}, false
	}
	ev := TraceEvent{Family: familyName(nftables.TableFamily(m.Data[0]))}
	var network, transport []byte
	var nfproto uint32
	err := nlio.EachAttr(m.Data[4:], func(t uint16, data []byte) error {
		switch t {
		case unix.NFTA_TRACE_TABLE:
			ev.Table = cstringOf(data)
		case unix.NFTA_TRACE_CHAIN:
			ev.Chain = cstringOf(data)
		case unix.NFTA_TRACE_RULE_HANDLE:
			if len(data) == 8 {
				ev.Handle = binary.BigEndian.Uint64(data)
			}
		case unix.NFTA_TRACE_TYPE:
			if len(data) == 4 {
				switch binary.BigEndian.Uint32(data) {
				case traceTypePolicy:
					ev.Kind = "policy"
				case traceTypeReturn:
					ev.Kind = "return"
				case traceTypeRule:
					ev.Kind = "rule"
				}
			}
		case unix.NFTA_TRACE_VERDICT:
			return nlio.EachAttr(data, func(t uint16, v []byte) error {
				switch {
				case t == nftaVerdictCode && len(v) == 4:
					ev.Verdict = verdictName(int32(binary.BigEndian.Uint32(v)))
				case t == nftaVerdictChain:
					ev.Target = cstringOf(v)
				}
				return nil
			})
		case unix.NFTA_TRACE_POLICY:
			if len(data) == 4 {
				ev.Verdict = verdictName(int32(binary.BigEndian.Uint32(data)))
			}
		case unix.NFTA_TRACE_ID:
			if len(data) == 4 {
				ev.ID = binary.BigEndian.Uint32(data)
			}
		case unix.NFTA_TRACE_NETWORK_HEADER:
			network = data
		case unix.NFTA_TRACE_TRANSPORT_HEADER:
			transport = data
		case nftaTraceCtState:
			if len(data) == 4 {
				ev.CtState = ctStateName(binary.BigEndian.Uint32(data))
			}
		case unix.NFTA_TRACE_NFPROTO:
			if len(data) == 4 {
				nfproto = binary.BigEndian.Uint32(data)
			}
		}
		return nil
	})
	if err != nil || ev.Kind == "" {
		return TraceEvent{}, false
	}
	if len(network) > 0 {
		if p, ok := decodePacket(nfproto == nfprotoIPv6 || network[0]>>4 == 6, append(append([]byte(nil), network...), transport...), false); ok {
			ev.Packet = p
		}
	}
	return ev, true
}

func cstringOf(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// verdictName names an nf_tables verdict code.
func verdictName(code int32) string {
	if code >= 0 {
		code &= 0xff // NF_VERDICT_MASK: a drop may carry an errno above
	}
	switch code {
	case 0:
		return "drop"
	case 1:
		return "accept"
	case -1:
		return "continue"
	case -2:
		return "break"
	case -3:
		return "jump"
	case -4:
		return "goto"
	case -5:
		return "return"
	}
	return fmt.Sprintf("verdict %d", code)
}

// ctStateName names the ct state bits of a trace event.
func ctStateName(bits uint32) string {
	for _, b := range []uint32{stateNew, stateRelated, stateEstablished, stateInvalid} {
		if bits&b != 0 {
			return stateNames[b]
		}
	}
	if bits&ctStateUntracked != 0 {
		return "untracked"
	}
	return fmt.Sprintf("state %#x", bits)
}

// ctStateUntracked is NF_CT_STATE_UNTRACKED_BIT.
const ctStateUntracked = 1 << 6
