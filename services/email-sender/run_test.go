package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"herald/services/contract"
)

func TestRunRejectsUnknownSubcommand(t *testing.T) {
	err := run(context.Background(), []string{"serve"}, getenvFrom(baseEnv()), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "serve") {
		t.Errorf("err %v, want an unknown subcommand error", err)
	}
}

func TestRunFailsFastOnConfig(t *testing.T) {
	env := baseEnv()
	delete(env, "HERALD_DLQ_URL")
	var out bytes.Buffer
	err := run(context.Background(), nil, getenvFrom(env), &out)
	if err == nil || !strings.Contains(err.Error(), "HERALD_DLQ_URL") {
		t.Errorf("err %v, want one naming HERALD_DLQ_URL", err)
	}
}

func TestHealthcheckSubcommand(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != contract.SenderHealthPath {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	env := map[string]string{"HERALD_HTTP_ADDR": ":" + port}
	args := []string{"healthcheck"}
	if err := run(context.Background(), args, getenvFrom(env), &bytes.Buffer{}); err != nil {
		t.Errorf("healthy service: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := run(context.Background(), args, getenvFrom(env), &bytes.Buffer{}); err == nil {
		t.Error("unhealthy service: no error")
	}
}

type fakeAccount struct {
	out *sesv2.GetAccountOutput
	err error
}

func (f fakeAccount) GetAccount(context.Context, *sesv2.GetAccountInput, ...func(*sesv2.Options)) (*sesv2.GetAccountOutput, error) {
	return f.out, f.err
}

func TestSESSendRate(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	quota := fakeAccount{out: &sesv2.GetAccountOutput{SendQuota: &types.SendQuota{MaxSendRate: 200}}}
	cases := []struct {
		name       string
		configured float64
		account    fakeAccount
		want       float64
	}{
		{"configured wins", 40, quota, 40},
		{"account quota", 0, quota, 200},
		{"GetAccount fails", 0, fakeAccount{err: errors.New("AccessDenied")}, sesFallbackSendRate},
		{"no quota in the answer", 0, fakeAccount{out: &sesv2.GetAccountOutput{}}, sesFallbackSendRate},
	}
	for _, tc := range cases {
		if got := sesSendRate(context.Background(), tc.configured, tc.account, log); got != tc.want {
			t.Errorf("%s: rate %v, want %v", tc.name, got, tc.want)
		}
	}
}

type fakeSecrets struct{ value string }

func (f fakeSecrets) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	if aws.ToString(in.SecretId) != "herald/smtp" {
		return nil, errors.New("ResourceNotFoundException")
	}
	return &secretsmanager.GetSecretValueOutput{SecretString: aws.String(f.value)}, nil
}

func TestSMTPCredentialsFromSecret(t *testing.T) {
	u, p, err := smtpCredentials(context.Background(), fakeSecrets{`{"username":"user","password":"pw"}`}, "herald/smtp")
	if err != nil || u != "user" || p != "pw" {
		t.Errorf("got %q %q %v", u, p, err)
	}
	for name, value := range map[string]string{
		"not JSON":         `user:hunter2`,
		"missing password": `{"username":"user"}`,
	} {
		_, _, err := smtpCredentials(context.Background(), fakeSecrets{value}, "herald/smtp")
		if err == nil || !strings.Contains(err.Error(), "HERALD_SMTP_SECRET_ID") {
			t.Errorf("%s: err %v, want one naming HERALD_SMTP_SECRET_ID", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error quotes the secret: %v", name, err)
		}
	}
	if _, _, err := smtpCredentials(context.Background(), fakeSecrets{}, "other"); err == nil {
		t.Error("a missing secret gave no error")
	}
}

func TestCertPool(t *testing.T) {
	dir := t.TempDir()
	certFile, _ := selfSignedCert(t, dir)
	if _, err := certPool(certFile); err != nil {
		t.Errorf("valid PEM: %v", err)
	}
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o600)
	if _, err := certPool(junk); err == nil || !strings.Contains(err.Error(), "HERALD_SMTP_CA_FILE") {
		t.Errorf("junk file: %v", err)
	}
	if _, err := certPool(filepath.Join(dir, "missing.pem")); err == nil {
		t.Error("missing file: no error")
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and localhost and its key
// as PEM files in dir.
func selfSignedCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "herald test relay"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
