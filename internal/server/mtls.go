package server

import (
	"net/http"
	"strings"
)

// Mutual TLS for agents (Config.AgentMTLS): the listener asks every client
// for a certificate and verifies one given against the agent CA; the agent
// stream and node credentials are then accepted only with a verified
// certificate whose common name is the node's name (lote server
// issue-cert). A stolen node.json or join token alone no longer joins.

const errNoAgentCert = "this server requires agents to present a client certificate issued by its agent CA " +
	"(lote agent --cert-file/--key-file; an admin issues one with lote server issue-cert)"

// agentCert is the common name of the client certificate the connection
// presented and the handshake verified, or "" when there is none.
func agentCert(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return ""
	}
	return r.TLS.VerifiedChains[0][0].Subject.CommonName
}

// certNames reports whether a certificate for name cn may act as node id:
// the node is named after the certificate, or after it with the "-N" the
// core appends when the name was taken.
func certNames(cn, id string) bool {
	if cn == "" {
		return false
	}
	if strings.EqualFold(cn, id) {
		return true
	}
	if len(id) < len(cn)+2 || !strings.EqualFold(id[:len(cn)], cn) || id[len(cn)] != '-' {
		return false
	}
	for _, c := range id[len(cn)+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
