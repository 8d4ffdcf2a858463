package deployer

import (
	"bytes"
	"testing"
)

func TestDeployerNXDomainReplyAnswersWithNoSuchName(t *testing.T) {
	// A recursive SRV query for _matrix-fed._tcp.hs1 with ID 0xbeef.
	query := []byte{0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, label := range []string{"_matrix-fed", "_tcp", "hs1"} {
		query = append(query, byte(len(label)))
		query = append(query, label...)
	}
	query = append(query, 0, 0, 33, 0, 1) // root, QTYPE SRV, QCLASS IN

	reply, ok := nxdomainReply(query)
	if !ok {
		t.Fatal("no reply to a well-formed query")
	}
	wantHeader := []byte{0xbe, 0xef, 0x85, 0x83, 0, 1, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(reply[:12], wantHeader) {
		t.Errorf("header = % x, want % x", reply[:12], wantHeader)
	}
	if !bytes.Equal(reply[12:], query[12:]) {
		t.Errorf("question not echoed: % x", reply[12:])
	}
}

func TestDeployerNXDomainReplyIgnoresNonQueries(t *testing.T) {
	for name, packet := range map[string][]byte{
		"short":     {1, 2, 3},
		"response":  {0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1},
		"truncated": {0, 1, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'h', 's'},
	} {
		if _, ok := nxdomainReply(packet); ok {
			t.Errorf("%s: answered", name)
		}
	}
}
