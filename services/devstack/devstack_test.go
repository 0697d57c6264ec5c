package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	sestypes "github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"herald/services/internal/store"
)

// binDir holds the binaries built once for this package's tests.
var binDir string

func TestMain(m *testing.M) {
	if mode := os.Getenv("DEVSTACK_TEST_HELPER"); mode != "" {
		helper(mode)
		return
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "devstack-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := FindRoot(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	names := []string{BinSQSLocal}
	if api, sender := Available(root); api && sender {
		names = append(names, BinNotificationAPI, BinEmailSender)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := Build(ctx, root, dir, names...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binDir = dir
	return m.Run()
}

// helper is what the test binary does when a test runs it as a child.
func helper(mode string) {
	switch mode {
	case "ignore-term":
		// Stays up through SIGTERM; only SIGKILL ends it.
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		time.Sleep(time.Hour)
	case "grandchild":
		// Starts a grandchild in its own (the helper's) process group, prints
		// its pid and waits.
		child, err := os.StartProcess(os.Args[0], []string{os.Args[0], "-test.run=^$"}, &os.ProcAttr{
			Env:   append(os.Environ(), "DEVSTACK_TEST_HELPER=sleep"),
			Files: []*os.File{nil, os.Stdout, os.Stderr},
		})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Printf("grandchild %d\n", child.Pid)
		time.Sleep(time.Hour)
	case "sleep":
		time.Sleep(time.Hour)
	case "exit3":
		fmt.Println("failing on purpose")
		os.Exit(3)
	}
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	// A zombie has exited; it only waits for its parent to reap it.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// waitGone polls until no pid is alive.
func waitGone(t *testing.T, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d is still alive", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestProcStopEscalatesAndKillsTheGroup(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	start := func(mode string, onLine func(string)) *proc {
		p := &proc{name: mode, logPath: filepath.Join(dir, mode+".log")}
		if err := p.start(procSpec{path: self, args: []string{"-test.run=^$"}, variables: append(os.Environ(), "DEVSTACK_TEST_HELPER="+mode), onStdout: onLine}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.kill)
		return p
	}

	t.Run("SIGTERM ignored: killed after the grace", func(t *testing.T) {
		ready := make(chan struct{}, 1)
		p := start("ignore-term", func(l string) {
			if l == "ready" {
				ready <- struct{}{}
			}
		})
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			t.Fatal("helper not ready")
		}
		pid, _ := p.running()
		err := p.stop(300 * time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("stop of a process ignoring SIGTERM: %v, want an error saying it was killed", err)
		}
		waitGone(t, pid)
	})
	t.Run("grandchildren go with the group", func(t *testing.T) {
		gc := make(chan int, 1)
		p := start("grandchild", func(l string) {
			var pid int
			if _, err := fmt.Sscanf(l, "grandchild %d", &pid); err == nil {
				gc <- pid
			}
		})
		var gpid int
		select {
		case gpid = <-gc:
		case <-time.After(10 * time.Second):
			t.Fatal("no grandchild pid")
		}
		if !alive(gpid) {
			t.Fatal("grandchild not running")
		}
		p.kill()
		waitGone(t, gpid)
	})
	t.Run("exit status and log", func(t *testing.T) {
		p := start("exit3", nil)
		<-p.exited()
		if p.exitErr() == nil {
			t.Fatal("exit 3 reported as success")
		}
		if log := p.tail(5); !strings.Contains(log, "failing on purpose") || !strings.Contains(log, "exit status 3") {
			t.Fatalf("log tail lacks the output or the exit: %q", log)
		}
	})
}

func emulators(t *testing.T, cfg Config) *Stack {
	t.Helper()
	cfg.BinDir = binDir
	cfg.LogDir = t.TempDir()
	cfg.EmulatorsOnly = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func sesClient(endpoint string) *sesv2.Client {
	return sesv2.New(sesv2.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(endpoint),
		Credentials:      credentials.NewStaticCredentialsProvider("local", "local", ""),
		RetryMaxAttempts: 1,
	})
}

func sendMail(ctx context.Context, c *sesv2.Client, from, subject string) error {
	_, err := c.SendEmail(ctx, &sesv2.SendEmailInput{
		FromEmailAddress: aws.String(from),
		Destination:      &sestypes.Destination{ToAddresses: []string{"alice@example.org"}, CcAddresses: []string{"bob@example.org"}},
		Content: &sestypes.EmailContent{Simple: &sestypes.Message{
			Subject: &sestypes.Content{Data: aws.String(subject)},
			Body:    &sestypes.Body{Text: &sestypes.Content{Data: aws.String("text body")}, Html: &sestypes.Content{Data: aws.String("<p>html body</p>")}},
		}},
	})
	return err
}

func TestEmulatorsStartKillRestartClose(t *testing.T) {
	s := emulators(t, Config{})
	ctx := context.Background()

	// SQS: the queue and the DLQ answer.
	q := s.SQSClient()
	if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(s.QueueURL()), MessageBody: aws.String("m")}); err != nil {
		t.Fatal(err)
	}
	if d, err := s.QueueDepth(ctx, s.QueueURL()); err != nil || d != (Depth{Visible: 1}) {
		t.Fatalf("queue depth %+v, %v; want 1 visible", d, err)
	}
	if d, err := s.QueueDepth(ctx, s.DLQURL()); err != nil || d.Total() != 0 {
		t.Fatalf("DLQ depth %+v, %v; want empty", d, err)
	}

	// SES through the gate: a verified sender reaches the emulator's store,
	// an unverified one gets MessageRejected from the real emulator stack.
	ses := sesClient(s.GateURL())
	if err := sendMail(ctx, ses, "noreply@example.com", "through the gate"); err != nil {
		t.Fatal(err)
	}
	var rejected *sestypes.MessageRejected
	if err := sendMail(ctx, ses, "noreply@example.net", "unverified"); !errors.As(err, &rejected) {
		t.Fatalf("unverified sender: %v, want MessageRejected", err)
	}
	mails, err := s.Emails(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(mails) != 1 || mails[0].Subject != "through the gate" || mails[0].Body.Text != "text body" ||
		mails[0].Body.HTML != "<p>html body</p>" || len(mails[0].Destination.Cc) != 1 {
		t.Fatalf("store %+v, want the one verified mail", mails)
	}
	if sends := s.Gate().Sends(); len(sends) != 1 || sends[0].MessageID != mails[0].MessageID {
		t.Fatalf("gate records %+v do not match the store's MessageId %s", sends, mails[0].MessageID)
	}

	// SIGKILL the SQS emulator: it is gone and SQS calls fail; a restart
	// brings the same endpoint back with empty queues.
	sqsPid, ok := s.Running(SQS)
	if !ok {
		t.Fatal("SQS not running")
	}
	endpoint := s.SQSEndpoint()
	if err := s.Kill(SQS); err != nil {
		t.Fatal(err)
	}
	waitGone(t, sqsPid)
	if _, err := s.QueueDepth(ctx, s.QueueURL()); err == nil {
		t.Fatal("queue answered with the emulator killed")
	}
	if err := s.Restart(ctx, SQS); err != nil {
		t.Fatal(err)
	}
	if s.SQSEndpoint() != endpoint {
		t.Fatalf("SQS came back on %s, was %s", s.SQSEndpoint(), endpoint)
	}
	if d, err := s.QueueDepth(ctx, s.QueueURL()); err != nil || d.Total() != 0 {
		t.Fatalf("restarted queue depth %+v, %v; want empty", d, err)
	}

	// SIGTERM the SES emulator: a clean stop; restart on the same URL.
	sesPid, _ := s.Running(SES)
	sesURL := s.SESURL()
	if err := s.Stop(SES); err != nil {
		t.Fatalf("stop SES: %v", err)
	}
	waitGone(t, sesPid)
	if err := sendMail(ctx, ses, "noreply@example.com", "emulator down"); err == nil {
		t.Fatal("send succeeded with the emulator stopped")
	}
	if err := s.Restart(ctx, SES); err != nil {
		t.Fatal(err)
	}
	if s.SESURL() != sesURL {
		t.Fatalf("SES came back on %s, was %s", s.SESURL(), sesURL)
	}
	if err := sendMail(ctx, ses, "noreply@example.com", "after restart"); err != nil {
		t.Fatal(err)
	}

	// Close leaves nothing behind, and says so once.
	sqsPid, _ = s.Running(SQS)
	sesPid, _ = s.Running(SES)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, sqsPid, sesPid)
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	for _, c := range []Component{SQS, SES} {
		if b, _ := os.ReadFile(s.LogPath(c)); !strings.Contains(string(b), "exited") {
			t.Errorf("%s log lacks its exits:\n%s", c, b)
		}
	}
}

func TestPeekDeadLetters(t *testing.T) {
	s := emulators(t, Config{MaxReceiveCount: 1, VisibilityTimeout: time.Second})
	ctx := context.Background()
	q := s.SQSClient()
	if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(s.QueueURL()), MessageBody: aws.String("poison")}); err != nil {
		t.Fatal(err)
	}
	// Received and never deleted, past MaxReceiveCount: redriven to the DLQ.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if d, err := s.QueueDepth(ctx, s.DLQURL()); err == nil && d.Total() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("message never reached the DLQ")
		}
		if _, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(s.QueueURL()), WaitTimeSeconds: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ { // peeking twice finds it twice: it stays
		dl, err := s.PeekDeadLetters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(dl) != 1 || dl[0].Body != "poison" {
			t.Fatalf("peek %d: %+v, want the poison message", i, dl)
		}
	}
	if d, err := s.QueueDepth(ctx, s.DLQURL()); err != nil || d.Visible != 1 {
		t.Fatalf("DLQ after peeks %+v, %v; want 1 visible", d, err)
	}
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]Config{
		"no bin dir":         {EmulatorsOnly: true},
		"not loopback":       {BinDir: binDir, EmulatorsOnly: true, SQSAddr: "0.0.0.0:9324"},
		"missing services":   {BinDir: t.TempDir()},
		"fractional timeout": {BinDir: binDir, EmulatorsOnly: true, VisibilityTimeout: 1500 * time.Millisecond},
		"no node":            {BinDir: binDir, EmulatorsOnly: true, Node: "no-such-node-binary"},
		"no node_modules":    {BinDir: binDir, EmulatorsOnly: true, Root: t.TempDir()},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.LogDir = t.TempDir()
			if s, err := Start(ctx, cfg); err == nil {
				s.Close()
				t.Fatal("started")
			}
		})
	}
}

func TestStartFailureCleansUp(t *testing.T) {
	// Given a port already taken for SES, Start fails after SQS started,
	// and stops SQS again.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	logDir := t.TempDir()
	_, err = Start(context.Background(), Config{BinDir: binDir, LogDir: logDir, EmulatorsOnly: true, SESAddr: ln.Addr().String(), StartTimeout: 10 * time.Second})
	if err == nil {
		t.Fatal("started with the SES port taken")
	}
	b, _ := os.ReadFile(filepath.Join(logDir, "sqs.log"))
	if !strings.Contains(string(b), "exited") {
		t.Fatalf("SQS was not stopped after the failed start; its log:\n%s", b)
	}
}

func TestFullStackStopKillRestartLeavesNothing(t *testing.T) {
	root, err := FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	if api, sender := Available(root); !api || !sender {
		t.Fatal("services/notification-api and services/email-sender are needed")
	}
	ctx := context.Background()
	// Two senders: a pipeline can run several, sharing the account.
	s, err := Start(ctx, Config{BinDir: binDir, LogDir: t.TempDir(), Senders: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	if got := fmt.Sprint(s.Components()); got != "[sqs ses sender sender-2 api]" {
		t.Fatalf("components %s", got)
	}
	pids := map[Component]int{}
	for _, c := range s.Components() {
		pid, ok := s.Running(c)
		if !ok {
			t.Fatalf("%s not running after Start", c)
		}
		pids[c] = pid
	}
	if err := s.get(ctx, s.APIURL()+"/readyz"); err != nil {
		t.Fatal(err)
	}
	// The state store's table is in the DynamoDB emulator, TTL on, and
	// both services are given it.
	dyn := s.Dynamo()
	ttl, err := dyn.Client().DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(s.StoreTable())})
	if err != nil {
		t.Fatal(err)
	}
	if d := ttl.TimeToLiveDescription; d.TimeToLiveStatus != types.TimeToLiveStatusEnabled || aws.ToString(d.AttributeName) != store.TTLAttribute {
		t.Errorf("table %s TTL %s on %q", s.StoreTable(), d.TimeToLiveStatus, aws.ToString(d.AttributeName))
	}
	for _, c := range []Component{API, Sender, SenderN(2)} {
		if b, err := os.ReadFile(s.LogPath(c)); err != nil || !strings.Contains(string(b), `"storeTable":"`+s.StoreTable()+`"`) {
			t.Errorf("%s was not given the store's table (%v)", c, err)
		}
	}
	// Each sender knows how many share the account.
	for _, c := range []Component{Sender, SenderN(2)} {
		if b, err := os.ReadFile(s.LogPath(c)); err != nil || !strings.Contains(string(b), `"senderTasks":2`) {
			t.Errorf("%s was not told it is one of 2 senders (%v)", c, err)
		}
	}

	// SIGTERM: each service drains and exits with status 0.
	for _, c := range []Component{Sender, API} {
		if err := s.Stop(c); err != nil {
			t.Fatalf("%s on SIGTERM: %v", c, err)
		}
		waitGone(t, pids[c])
		if err := s.Restart(ctx, c); err != nil {
			t.Fatal(err)
		}
		pids[c], _ = s.Running(c)
	}
	// SIGKILL, then a restart on the same address.
	apiURL := s.APIURL()
	if err := s.Kill(API); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pids[API])
	if err := s.get(ctx, apiURL+"/healthz"); err == nil {
		t.Fatal("the killed API still answers")
	}
	if err := s.Restart(ctx, API); err != nil {
		t.Fatal(err)
	}
	if s.APIURL() != apiURL {
		t.Fatalf("API came back on %s, was %s", s.APIURL(), apiURL)
	}
	pids[API], _ = s.Running(API)

	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	for c, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (pid %d) alive after Close", c, pid)
		}
	}
	waitGone(t, pids[SQS], pids[SES], pids[API], pids[Sender], pids[SenderN(2)])
	select {
	case <-dyn.Exited():
	default:
		t.Error("the DynamoDB emulator runs after Close")
	}
}

// TestNoStoreRunsTheSQSPathAlone: without the state store the pipeline
// starts no DynamoDB emulator and gives the services no table and no
// feedback settings; a notification still goes through, and what needs the
// store is refused by the API instead of half-working.
func TestNoStoreRunsTheSQSPathAlone(t *testing.T) {
	root, err := FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	if api, sender := Available(root); !api || !sender {
		t.Fatal("services/notification-api and services/email-sender are needed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, Config{BinDir: binDir, LogDir: t.TempDir(), NoStore: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if s.Dynamo() != nil {
		t.Fatal("a DynamoDB emulator runs with NoStore")
	}
	for _, c := range []Component{API, Sender} {
		b, err := os.ReadFile(s.LogPath(c))
		if err != nil {
			t.Fatal(err)
		}
		for _, setting := range []string{`"storeTable":"herald`, `"sesConfigurationSet":"herald"`} {
			if strings.Contains(string(b), setting) {
				t.Errorf("%s was given %s with NoStore", c, setting)
			}
		}
	}
	post := func(idempotencyKey string) int {
		t.Helper()
		body := `{"from":"noreply@example.com","to":["nostore@example.com"],"subject":"no store","text":"x"}`
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.APIURL()+"/api/notifications", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+s.APIKey())
		if idempotencyKey != "" {
			req.Header.Set("Idempotency-Key", idempotencyKey)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post("k-1"); got != http.StatusNotImplemented {
		t.Errorf("Idempotency-Key without a store: status %d, want 501", got)
	}
	if got := post(""); got != http.StatusAccepted {
		t.Fatalf("post: status %d, want 202", got)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		mails, err := s.Emails(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(mails) == 1 {
			break
		}
		if len(mails) > 1 || time.Now().After(deadline) {
			t.Fatalf("%d mails in the SES store, want 1", len(mails))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestServiceComponentNames(t *testing.T) {
	for _, tc := range []struct {
		c           Component
		api, sender bool
	}{
		{APIN(1), true, false},
		{APIN(0), true, false},
		{APIN(3), true, false},
		{SenderN(1), false, true},
		{SenderN(2), false, true},
		{SQS, false, false},
		{SES, false, false},
	} {
		if IsAPI(tc.c) != tc.api || IsSender(tc.c) != tc.sender {
			t.Errorf("%s: IsAPI %v, IsSender %v; want %v, %v", tc.c, IsAPI(tc.c), IsSender(tc.c), tc.api, tc.sender)
		}
	}
	if APIN(1) != API || APIN(3) != "api-3" {
		t.Errorf("APIN(1) %q, APIN(3) %q", APIN(1), APIN(3))
	}
}

func TestAPIsOutOfRangeRefused(t *testing.T) {
	for _, n := range []int{-1, 21} {
		if _, err := Start(context.Background(), Config{BinDir: binDir, LogDir: t.TempDir(), APIs: n}); err == nil || !strings.Contains(err.Error(), "APIs") {
			t.Errorf("APIs %d: %v, want an error naming APIs", n, err)
		}
	}
}
