package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ftpnft/ftpnft/nft"
)

// The control channel's lines that name data connections, as the trace
// tells them: PASV's 227 (with and without parentheses), EPSV's 229, PORT
// and EPRT (in any case); malformed ones tell nothing.
func TestTraceReadsControlLines(t *testing.T) {
	client, server := netip.MustParseAddrPort("192.0.2.2:40000"), netip.MustParseAddrPort("192.0.2.1:21")
	for _, tt := range []struct {
		fromClient bool
		line       string
		want       string // in the story's line; "" for none
	}{
		{false, "227 Entering Passive Mode (192,0,2,1,195,80).", "passive data connection to 192.0.2.1:50000"},
		{false, "227 Entering Passive Mode 192,0,2,1,195,81", "passive data connection to 192.0.2.1:50001"},
		{false, "229 Entering Extended Passive Mode (|||50002|)", "passive data connection to 192.0.2.1:50002"},
		{true, "PORT 192,0,2,2,195,83", "active data connection to 192.0.2.2:50003"},
		{true, "port 192,0,2,2,195,84", "active data connection to 192.0.2.2:50004"},
		{true, "EPRT |1|192.0.2.2|50005|", "active data connection to 192.0.2.2:50005"},
		{true, "EPRT |2|2001:db8::2|50006|", "active data connection to 2001:db8::2:50006"},
		{false, "227 Entering Passive Mode (192,0,2,1,195)", ""},
		{false, "229 Entering Extended Passive Mode (|||x|)", ""},
		{true, "EPRT |1|nonsense|50007|", ""},
		{true, "PORT 192,0,2,2", ""},
		{false, "PORT 192,0,2,2,195,88", ""}, // a command from the server is no command
		{true, "227 Entering Passive Mode (192,0,2,1,195,89)", ""},
	} {
		var lines []storyLine
		tr := &tracer{cfg: nft.DefaultConfig(), sessions: map[string]*session{}, packets: map[uint32]*tracedPacket{},
			emit: func(l storyLine) { lines = append(lines, l) }}
		p := nft.Packet{Src: server.Addr(), SPort: server.Port(), Dst: client.Addr(), DPort: client.Port(), Payload: []byte(tt.line + "\r\n")}
		if tt.fromClient {
			p = nft.Packet{Src: client.Addr(), SPort: client.Port(), Dst: server.Addr(), DPort: server.Port(), Payload: []byte(tt.line + "\r\n")}
		}
		tr.log(p)
		var got []string
		for _, l := range lines {
			got = append(got, l.Detail)
		}
		switch {
		case tt.want == "" && len(lines) != 0:
			t.Errorf("%q: told %q, want nothing", tt.line, got)
		case tt.want != "" && (len(lines) != 1 || !strings.Contains(lines[0].Detail, tt.want) || lines[0].Session != "192.0.2.2:40000 -> 192.0.2.1:21"):
			t.Errorf("%q: told %q, want one line of session 192.0.2.2:40000 -> 192.0.2.1:21 with %q", tt.line, got, tt.want)
		}
	}
}
