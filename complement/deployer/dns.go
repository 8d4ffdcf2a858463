package deployer

import (
	"errors"
	"net"
	"sync"
)

// nxdomainAddr is where isolate.sh's private /etc/resolv.conf sends DNS queries.
const nxdomainAddr = "127.0.0.1:53"

var (
	dnsOnce sync.Once
	dnsErr  error
	dnsConn net.PacketConn
)

// startNXDomainServer answers every DNS query inside the private namespace
// with "no such name". Synapse looks up SRV records for server names without
// a port ("hs1"); with no DNS server at all the lookup fails with "network
// unreachable", which Synapse treats as the peer being down. An authoritative
// "no such name" instead makes it fall back to <name>:8448, as on Complement's
// Docker network. Host names themselves come from /etc/hosts, not from here.
func startNXDomainServer() error {
	dnsOnce.Do(func() {
		dnsConn, dnsErr = net.ListenPacket("udp", nxdomainAddr)
		if dnsErr != nil {
			return
		}
		go serveNXDomain(dnsConn)
	})
	return dnsErr
}

func stopNXDomainServer() {
	if dnsConn != nil {
		dnsConn.Close()
	}
}

func serveNXDomain(conn net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		if reply, ok := nxdomainReply(buf[:n]); ok {
			_, _ = conn.WriteTo(reply, from)
		}
	}
}

// nxdomainReply turns a DNS query into its NXDOMAIN answer: the same ID and
// question, flags "response, authoritative, recursion available, no such
// name", and no records (RFC 1035 §4.1). Malformed queries get no answer.
func nxdomainReply(query []byte) ([]byte, bool) {
	const headerLen = 12
	if len(query) < headerLen || query[2]&0x80 != 0 || query[4] != 0 || query[5] != 1 {
		return nil, false // too short, not a query, or not exactly one question
	}
	end := headerLen
	for end < len(query) && query[end] != 0 { // the QNAME labels
		end += 1 + int(query[end])
	}
	end += 1 + 4 // the root label, QTYPE and QCLASS
	if end > len(query) {
		return nil, false
	}
	reply := append([]byte(nil), query[:end]...)
	reply[2] = 0x80 | 0x04 | query[2]&0x79 // QR, AA; keep opcode and RD
	reply[3] = 0x80 | 0x03                 // RA, RCODE 3 (NXDOMAIN)
	for i := 6; i < headerLen; i++ {       // ANCOUNT, NSCOUNT, ARCOUNT = 0
		reply[i] = 0
	}
	return reply, true
}
