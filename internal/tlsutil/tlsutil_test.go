package tlsutil

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestEnsureAndRotate: Ensure makes a CA and a server certificate a client
// trusting the CA accepts; a replaced certificate is served without a
// restart.
func TestEnsureAndRotate(t *testing.T) {
	dir := t.TempDir()
	ip := net.IPv4(127, 0, 0, 1)
	m, err := Ensure(dir, ip, "")
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReloader(m.CertFile, m.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: r.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	pool, err := Pool(m.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("a client trusting the CA was refused: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first := serial()

	// Ensure again keeps a certificate that still covers the address.
	if _, err := Ensure(dir, ip, ""); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != first {
		t.Fatalf("Ensure replaced a valid certificate")
	}
	// Rotate: a new certificate from the same CA, written over the old one.
	if err := os.Remove(filepath.Join(dir, "server.pem")); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(dir, ip, ""); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	os.Chtimes(m.CertFile, later, later)
	deadline := time.Now().Add(10 * time.Second)
	for serial() == first {
		if time.Now().After(deadline) {
			t.Fatal("the rotated certificate was not served")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
