package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"herald/services/contract"
	"herald/services/internal/herald"
)

// secretsAPI is what herald-ops asks of Secrets Manager.
type secretsAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
	PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
	DescribeSecret(ctx context.Context, in *secretsmanager.DescribeSecretInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.DescribeSecretOutput, error)
}

// stageCurrent is the staging label of a secret's value in force.
const stageCurrent = "AWSCURRENT"

// keyChange edits the secret's key id -> SHA-256 hex map for one key id
// and returns the new key to show, if there is one.
type keyChange func(keys map[string]string, id string) (key string, err error)

func addKey(keys map[string]string, id string) (string, error) {
	if _, ok := keys[id]; ok {
		return "", fmt.Errorf("key id %q is in the secret already; keys rotate replaces its key", id)
	}
	key, hash, err := herald.NewAPIKey()
	keys[id] = hash
	return key, err
}

func rotateKey(keys map[string]string, id string) (string, error) {
	if _, ok := keys[id]; !ok {
		return "", fmt.Errorf("key id %q is not in the secret (have %s); keys add makes it", id, idList(keys))
	}
	key, hash, err := herald.NewAPIKey()
	keys[id] = hash
	return key, err
}

func revokeKey(keys map[string]string, id string) (string, error) {
	if _, ok := keys[id]; !ok {
		return "", fmt.Errorf("key id %q is not in the secret (have %s)", id, idList(keys))
	}
	delete(keys, id)
	return "", nil
}

func idList(keys map[string]string) string {
	if len(keys) == 0 {
		return "none"
	}
	ids := make([]string, 0, len(keys))
	for id := range keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return strings.Join(ids, ", ")
}

func keysFlags(change keyChange) func(fs *flag.FlagSet) func(context.Context, *invocation, []string) error {
	return func(fs *flag.FlagSet) func(context.Context, *invocation, []string) error {
		timeout := fs.Duration("timeout", 10*time.Minute, "how long to wait for the API to use the change (it reads the secret every "+contract.APIKeysRefresh.Name+", "+contract.APIKeysRefresh.DefaultText(contract.API)+" by default)")
		confirm := fs.Int("confirm", 5, "answers in a row from /readyz that must show the new version (the load balancer spreads them over the tasks)")
		noWait := fs.Bool("no-wait", false, "store the change and do not wait for the API")
		return func(ctx context.Context, e *invocation, args []string) error {
			id := args[0]
			if err := contract.CheckKeyID(id); err != nil {
				return err
			}
			if *confirm < 1 || *timeout <= 0 {
				return fmt.Errorf("-confirm %d and -timeout %s must be positive", *confirm, *timeout)
			}
			need := []string{"secret-id"}
			if !*noWait {
				need = append(need, "api-url")
			}
			if err := e.need(need...); err != nil {
				return err
			}
			c, err := e.clients.secrets(ctx, &e.target)
			if err != nil {
				return err
			}
			version, err := changeKeys(ctx, e, c, id, change)
			if err != nil {
				return err
			}
			if *noWait {
				fmt.Fprintln(e.stdout, "not waiting for the API (-no-wait); its /readyz shows apiKeysVersion "+version+" once a task uses it")
				return nil
			}
			return waitForVersion(ctx, e, version, *confirm, *timeout)
		}
	}
}

// changeKeys reads the secret, applies change, writes it back as a new
// version and returns that version. It refuses to write over a value the API
// could not read, and over a change someone made since it read.
func changeKeys(ctx context.Context, e *invocation, c secretsAPI, id string, change keyChange) (string, error) {
	keys, read, err := readKeys(ctx, c, e.secretID)
	if err != nil {
		return "", err
	}
	key, err := change(keys, id)
	if err != nil {
		return "", err
	}
	// Secrets Manager has no compare-and-set: check that the version read is
	// still current just before writing, which narrows a lost update to
	// the time of one call.
	d, err := c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(e.secretID)})
	if err != nil {
		return "", fmt.Errorf("describe the secret %s: %w", e.secretID, err)
	}
	if now := currentVersion(d.VersionIdsToStages); now != read {
		return "", fmt.Errorf("the secret %s changed while this ran (version %q, read %q): nothing written; run the command again", e.secretID, now, read)
	}
	value, err := json.Marshal(keys)
	if err != nil {
		return "", err
	}
	put, err := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId:     aws.String(e.secretID),
		SecretString: aws.String(string(value)),
		// The new version's id, and what makes a retried call idempotent.
		ClientRequestToken: aws.String(herald.NewID()),
	})
	if err != nil {
		return "", fmt.Errorf("write the secret %s: %w", e.secretID, err)
	}
	version := aws.ToString(put.VersionId)
	if key != "" {
		fmt.Fprintf(e.stdout, "API key %s (shown once; give it to the client, Herald keeps only its hash):\n\n    %s\n\n", id, key)
	} else {
		fmt.Fprintf(e.stdout, "API key %s removed\n", id)
	}
	fmt.Fprintf(e.stdout, "secret %s: version %s, key ids %s\n", aws.ToString(put.ARN), version, idList(keys))
	return version, nil
}

// readKeys reads the secret's key map and the version it came from ("" for
// a secret that has no value yet, as the stacks create it).
func readKeys(ctx context.Context, c secretsAPI, secretID string) (map[string]string, string, error) {
	out, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(secretID)})
	var notFound *smtypes.ResourceNotFoundException
	if errors.As(err, &notFound) {
		// No secret, or a secret without a value: DescribeSecret tells which.
		if _, derr := c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(secretID)}); derr != nil {
			return nil, "", fmt.Errorf("read the secret %s: %w", secretID, err)
		}
		return map[string]string{}, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read the secret %s: %w", secretID, err)
	}
	keys := map[string]string{}
	if s := aws.ToString(out.SecretString); strings.TrimSpace(s) != "" {
		// Refuse what the API would refuse, by the API's own parser.
		if _, err := contract.ParseKeySet(s); err != nil {
			return nil, "", fmt.Errorf("the secret %s is a value the API refuses (%v): fix it before changing keys", secretID, err)
		}
		if err := json.Unmarshal([]byte(s), &keys); err != nil {
			return nil, "", fmt.Errorf("the secret %s: %w", secretID, err)
		}
	}
	return keys, aws.ToString(out.VersionId), nil
}

func currentVersion(stages map[string][]string) string {
	for v, labels := range stages {
		if slices.Contains(labels, stageCurrent) {
			return v
		}
	}
	return ""
}

// waitForVersion polls the API's /readyz until confirm answers in a row show
// version as apiKeysVersion. Behind a load balancer each answer may come
// from another task; the default round robin makes a few answers in a row
// cover every task of a small service.
func waitForVersion(ctx context.Context, e *invocation, version string, confirm int, timeout time.Duration) error {
	url := strings.TrimRight(e.apiURL, "/") + "/readyz"
	fmt.Fprintf(e.stdout, "waiting until %s shows apiKeysVersion %s in %d answers in a row ...\n", url, version, confirm)
	client := e.clients.http()
	deadline := time.Now().Add(timeout)
	inARow, answers := 0, 0
	lastSeen := ""
	for {
		seen, err := readyVersion(ctx, client, url)
		answers++
		switch {
		case err != nil:
			inARow = 0
			seen = "error: " + err.Error()
		case seen == version:
			inARow++
		default:
			inARow = 0
			seen = "version " + orDash(seen)
		}
		if inARow >= confirm {
			fmt.Fprintf(e.stdout, "the API uses version %s (%d answers in a row, %d in all): the change is in force\n", version, inARow, answers)
			return nil
		}
		if seen != version && seen != lastSeen {
			fmt.Fprintf(e.stdout, "  a task still answers %s\n", seen)
			lastSeen = seen
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s the API still answers %s: the secret holds the change, but a task has not read it; its log says why (\"API key refresh failed\")", timeout, lastSeen)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped waiting; the secret holds version %s: %w", version, ctx.Err())
		case <-time.After(e.every):
		}
	}
}

// readyVersion is the apiKeysVersion of one /readyz answer.
func readyVersion(ctx context.Context, client *http.Client, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	var ready struct {
		APIKeysVersion string `json:"apiKeysVersion"`
	}
	if err := json.Unmarshal(body, &ready); err != nil {
		return "", fmt.Errorf("answer is not JSON: %w", err)
	}
	return ready.APIKeysVersion, nil
}
