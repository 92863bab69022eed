// Package tlsutil creates the TLS material a server needs when it listens
// off loopback and no certificate was given: a private CA (kept in the data
// dir) and a server certificate for the listen address, which agents and the
// CLI trust through the CA file; and, for mutual TLS, agents' client
// certificates issued from that CA.
package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Material names the files Ensure keeps.
type Material struct {
	CAFile, CertFile, KeyFile string
}

// Ensure makes sure dir holds a CA and a server certificate valid for ip
// and host (every local address when ip is unspecified), issuing a new server
// certificate when the current one does not cover them.
func Ensure(dir string, ip net.IP, host string) (Material, error) {
	m := Material{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "server.pem"),
		KeyFile:  filepath.Join(dir, "server.key"),
	}
	caCert, caKey, err := ensureCA(dir)
	if err != nil {
		return m, err
	}
	ips, names := wanted(ip, host)
	if cert, _, err := loadPair(m.CertFile, m.KeyFile); err == nil && covers(cert, ips, names) &&
		cert.CheckSignatureFrom(caCert) == nil && time.Now().Before(cert.NotAfter.Add(-24*time.Hour)) {
		return m, nil
	}
	if err := issue(m, caCert, caKey, ips, names); err != nil {
		return m, fmt.Errorf("tls server certificate in %s: %w", dir, err)
	}
	return m, nil
}

// EnsureCA makes sure dir holds a CA, creating one if not, and returns its
// certificate file: the CA agents' client certificates are issued from.
func EnsureCA(dir string) (string, error) {
	_, _, err := ensureCA(dir)
	return filepath.Join(dir, "ca.pem"), err
}

func ensureCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	caCert, caKey, err := loadPair(certFile, keyFile)
	if errors.Is(err, os.ErrNotExist) {
		caCert, caKey, err = newCA(certFile, keyFile)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tls CA in %s: %w", dir, err)
	}
	return caCert, caKey, nil
}

// IssueClient issues a client certificate for the agent of node name from
// the CA in dir (which must exist: the server makes it) and writes it to
// outDir as agent.pem and agent.key, with a copy of the CA as ca.pem (the
// agent's --ca-file when the server's certificate is the generated one).
// The certificate's common name is the node's name.
func IssueClient(dir, name, outDir string, validFor time.Duration) (Material, error) {
	m := Material{
		CAFile:   filepath.Join(outDir, "ca.pem"),
		CertFile: filepath.Join(outDir, "agent.pem"),
		KeyFile:  filepath.Join(outDir, "agent.key"),
	}
	caCert, caKey, err := loadPair(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"))
	if err != nil {
		return m, fmt.Errorf("reading the CA in %s (start the server once to create it): %w", dir, err)
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return m, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return m, err
	}
	tpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"lote agent"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return m, err
	}
	if err := writePair(m.CertFile, m.KeyFile, der, key); err != nil {
		return m, err
	}
	return m, os.WriteFile(m.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}), 0o644)
}

func wanted(ip net.IP, host string) ([]net.IP, []string) {
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	names := []string{"localhost"}
	if h, err := os.Hostname(); err == nil {
		names = append(names, h)
	}
	if ip.IsUnspecified() {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					ips = append(ips, n.IP)
				}
			}
		}
	} else if ip != nil {
		ips = append(ips, ip)
	}
	if host != "" && net.ParseIP(host) == nil {
		names = append(names, host)
	}
	return ips, names
}

func covers(c *x509.Certificate, ips []net.IP, names []string) bool {
	for _, ip := range ips {
		if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
			return false
		}
	}
	for _, n := range names {
		if !slices.Contains(c.DNSNames, n) {
			return false
		}
	}
	return true
}

func newCA(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Lote CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePair(certFile, keyFile, der, key); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func issue(m Material, ca *x509.Certificate, caKey *ecdsa.PrivateKey, ips []net.IP, names []string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "lote server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  ips,
		DNSNames:     names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	return writePair(m.CertFile, m.KeyFile, der, key)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err)
	}
	return n
}

func writePair(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func loadPair(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	cblock, _ := pem.Decode(cb)
	kblock, _ := pem.Decode(kb)
	if cblock == nil || kblock == nil {
		return nil, nil, errors.New("not PEM")
	}
	cert, err := x509.ParseCertificate(cblock.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kblock.Bytes)
	return cert, key, err
}

// Pool returns a certificate pool trusting the CA in caFile.
func Pool(caFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no certificate found", caFile)
	}
	return p, nil
}

// Reloader serves a certificate from files and picks up a replaced pair
// (certificate rotation) without a restart: the files' modification times
// are checked at most every few seconds, on a handshake.
type Reloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	mtime   time.Time
	checked time.Time
}

// NewReloader loads the pair once, so a bad pair fails at start.
func NewReloader(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Reloader) load() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.cert, r.mtime = &cert, r.modTime()
	return nil
}

func (r *Reloader) modTime() time.Time {
	var latest time.Time
	for _, f := range []string{r.certFile, r.keyFile} {
		if st, err := os.Stat(f); err == nil && st.ModTime().After(latest) {
			latest = st.ModTime()
		}
	}
	return latest
}

// GetCertificate is for tls.Config. A pair that fails to load keeps the
// previous certificate in service.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) > reloadCheck {
		r.checked = time.Now()
		if m := r.modTime(); m.After(r.mtime) {
			prev := r.cert
			if err := r.load(); err != nil {
				r.cert = prev
			}
		}
	}
	return r.cert, nil
}

// GetClientCertificate is for tls.Config, on the client side of mutual
// TLS: it presents the pair like GetCertificate, rotation included.
func (r *Reloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.GetCertificate(nil)
}

// reloadCheck is how often a handshake may stat the certificate files.
const reloadCheck = 2 * time.Second
