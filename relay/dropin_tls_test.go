package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// tlsBinding dials srv's TLS listener with cc and reports whether a STUN
// Binding request gets its answer (a refused handshake, including a
// client certificate refused after a TLS 1.3 handshake, gets none).
func tlsBinding(t *testing.T, srv *Server, cc *tls.Config) bool {
	t.Helper()
	cc.InsecureSkipVerify = true // self-signed test certificate
	c, err := tls.Dial("tcp", srv.Addr("tls").String(), cc)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = streamRoundTrip(c, stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint))
	return err == nil
}

func tlsServer(t *testing.T, mutate func(*Config)) *Server {
	cert := selfSigned(t)
	return newTestServer(t, func(c *Config) {
		c.Listeners = append(c.Listeners, Listener{Network: "tls", Addr: "127.0.0.1:0"})
		c.Certificate = cert
		mutate(c)
	})
}

// TestTLSOptions: coturn's no-tlsv1_2, cipher-list and ec-curve-name
// settings decide which TLS clients get through.
func TestTLSOptions(t *testing.T) {
	tls13 := tlsServer(t, func(c *Config) { c.TLSMinVersion = tls.VersionTLS13 })
	if tlsBinding(t, tls13, &tls.Config{MaxVersion: tls.VersionTLS12}) {
		t.Error("TLS 1.3-only listener served a TLS 1.2 client")
	}
	if !tlsBinding(t, tls13, &tls.Config{}) {
		t.Error("TLS 1.3-only listener refused a TLS 1.3 client")
	}

	suites := tlsServer(t, func(c *Config) {
		c.TLSCipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
	})
	if tlsBinding(t, suites, &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}) {
		t.Error("a TLS 1.2 client without the configured suite got through")
	}
	if !tlsBinding(t, suites, &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}) {
		t.Error("a TLS 1.2 client with the configured suite was refused")
	}

	curves := tlsServer(t, func(c *Config) { c.TLSCurves = []tls.CurveID{tls.CurveP384} })
	if tlsBinding(t, curves, &tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP256}}) {
		t.Error("a client offering only P-256 got through a P-384 listener")
	}
	if !tlsBinding(t, curves, &tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP384}}) {
		t.Error("a client offering P-384 was refused")
	}

	if err := (Config{TLSMinVersion: tls.VersionTLS11}).withDefaults().validate(); err == nil {
		t.Error("TLS 1.1 accepted as minimum")
	}
	if err := (Config{TLSCipherSuites: []uint16{tls.TLS_RSA_WITH_RC4_128_SHA}}).withDefaults().validate(); err == nil {
		t.Error("an insecure suite accepted")
	}
}

// TestTLSClientCAs: with coturn's CA-file only clients with a certificate
// from that CA are served.
func TestTLSClientCAs(t *testing.T) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(10), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	clKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	clTmpl := &x509.Certificate{SerialNumber: big.NewInt(11), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	clDER, err := x509.CreateCertificate(rand.Reader, clTmpl, ca, &clKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	clientCert := tls.Certificate{Certificate: [][]byte{clDER}, PrivateKey: clKey}

	srv := tlsServer(t, func(c *Config) { c.TLSClientCAs = pool })
	if tlsBinding(t, srv, &tls.Config{}) {
		t.Error("a client without a certificate was served")
	}
	stranger := selfSigned(t)
	if tlsBinding(t, srv, &tls.Config{Certificates: []tls.Certificate{*stranger}}) {
		t.Error("a client with a certificate from another issuer was served")
	}
	if !tlsBinding(t, srv, &tls.Config{Certificates: []tls.Certificate{clientCert}}) {
		t.Error("a client with a certificate from the CA was refused")
	}
}
