package secretslocal

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

func start(t *testing.T, secrets map[string]string) (*Server, *secretsmanager.Client) {
	t.Helper()
	s, err := Start("127.0.0.1:0", Config{Region: "eu-west-1", Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, secretsmanager.New(secretsmanager.Options{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(s.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
	})
}

// Each PutSecretValue is a new version that takes AWSCURRENT; the one that
// had it becomes AWSPREVIOUS, the one before loses its label; GetSecretValue
// reads AWSCURRENT unless asked for a version or a stage.
func TestVersionsAndStages(t *testing.T) {
	s, c := start(t, map[string]string{"team/keys": `{}`})
	ctx := context.Background()
	first, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("team/keys")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(first.SecretString) != `{}` || !slices.Equal(first.VersionStages, []string{StageCurrent}) || aws.ToString(first.ARN) != s.ARN("team/keys") {
		t.Fatalf("initial value %+v", first)
	}
	if !strings.HasPrefix(aws.ToString(first.ARN), "arn:aws:secretsmanager:eu-west-1:"+AccountID+":secret:team/keys-") || first.CreatedDate == nil {
		t.Errorf("ARN %q, created %v", aws.ToString(first.ARN), first.CreatedDate)
	}
	var versions []string
	for i, value := range []string{`{"a":"1"}`, `{"a":"2"}`} {
		out, err := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: first.ARN, SecretString: aws.String(value)})
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(out.VersionId) == "" || !slices.Equal(out.VersionStages, []string{StageCurrent}) {
			t.Fatalf("put %d: %+v", i, out)
		}
		versions = append(versions, aws.ToString(out.VersionId))
	}
	cur, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("team/keys")})
	if err != nil || aws.ToString(cur.SecretString) != `{"a":"2"}` || aws.ToString(cur.VersionId) != versions[1] {
		t.Fatalf("current: %v %+v", err, cur)
	}
	prev, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("team/keys"), VersionStage: aws.String(StagePrevious)})
	if err != nil || aws.ToString(prev.SecretString) != `{"a":"1"}` || aws.ToString(prev.VersionId) != versions[0] {
		t.Fatalf("previous: %v %+v", err, prev)
	}
	old, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("team/keys"), VersionId: first.VersionId})
	if err != nil || aws.ToString(old.SecretString) != `{}` || len(old.VersionStages) != 0 {
		t.Fatalf("first version by id: %v %+v", err, old)
	}
	d, err := c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("team/keys")})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{aws.ToString(first.VersionId): {}, versions[0]: {StagePrevious}, versions[1]: {StageCurrent}}
	if len(d.VersionIdsToStages) != 3 {
		t.Fatalf("VersionIdsToStages %v, want %v", d.VersionIdsToStages, want)
	}
	for id, stages := range want {
		if !slices.Equal(d.VersionIdsToStages[id], stages) {
			t.Errorf("version %s: stages %v, want %v", id, d.VersionIdsToStages[id], stages)
		}
	}
	if d.LastChangedDate == nil || d.LastChangedDate.Before(*d.CreatedDate) {
		t.Errorf("dates: created %v, changed %v", d.CreatedDate, d.LastChangedDate)
	}
}

// A ClientRequestToken names the version: the same value again is the same
// version, another value is refused.
func TestClientRequestTokenIsIdempotent(t *testing.T) {
	_, c := start(t, map[string]string{"k": `{}`})
	ctx := context.Background()
	put := func(value string) (*secretsmanager.PutSecretValueOutput, error) {
		return c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("k"), ClientRequestToken: aws.String("11111111-2222-4333-8444-555555555555"), SecretString: aws.String(value)})
	}
	a, err := put(`{"x":"1"}`)
	if err != nil {
		t.Fatal(err)
	}
	b, err := put(`{"x":"1"}`)
	if err != nil || aws.ToString(b.VersionId) != aws.ToString(a.VersionId) || aws.ToString(a.VersionId) != "11111111-2222-4333-8444-555555555555" {
		t.Fatalf("repeat: %v, versions %q and %q", err, aws.ToString(a.VersionId), aws.ToString(b.VersionId))
	}
	_, err = put(`{"x":"2"}`)
	var exists *types.ResourceExistsException
	if !errors.As(err, &exists) {
		t.Fatalf("same token, other value: %T %v, want ResourceExistsException", err, err)
	}
	d, _ := c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("k")})
	if len(d.VersionIdsToStages) != 2 {
		t.Errorf("%d versions, want 2", len(d.VersionIdsToStages))
	}
}

func TestLookupsAndErrors(t *testing.T) {
	s, c := start(t, map[string]string{"app/keys": `{}`})
	ctx := context.Background()
	if _, err := c.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("empty")}); err != nil {
		t.Fatal(err)
	}
	arn := s.ARN("app/keys")
	for _, id := range []string{"app/keys", arn, arn[:len(arn)-7]} {
		if _, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)}); err != nil {
			t.Errorf("get by %q: %v", id, err)
		}
	}
	var notFound *types.ResourceNotFoundException
	var invalid *types.InvalidParameterException
	var exists *types.ResourceExistsException
	cases := []struct {
		name   string
		call   func() error
		target any
	}{
		{"unknown secret", func() error {
			_, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("nope")})
			return err
		}, &notFound},
		{"secret without a value", func() error {
			_, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("empty")})
			return err
		}, &notFound},
		{"unknown version", func() error {
			_, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/keys"), VersionId: aws.String("11111111-2222-4333-8444-555555555555")})
			return err
		}, &notFound},
		{"describe unknown", func() error {
			_, err := c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("nope")})
			return err
		}, &notFound},
		{"put without a value", func() error {
			_, err := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("app/keys")})
			return err
		}, &invalid},
		{"put into unknown", func() error {
			_, err := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("nope"), SecretString: aws.String("{}")})
			return err
		}, &notFound},
		{"create twice", func() error {
			_, err := c.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("app/keys"), SecretString: aws.String("{}")})
			return err
		}, &exists},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.As(err, tc.target) {
				t.Errorf("error %T %v, want %T", err, err, tc.target)
			}
		})
	}
	// The secret created empty takes a first value.
	if _, err := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("empty"), SecretString: aws.String(`{"k":"v"}`)}); err != nil {
		t.Fatal(err)
	}
	if out, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("empty")}); err != nil || aws.ToString(out.SecretString) != `{"k":"v"}` {
		t.Errorf("first value: %v %+v", err, out)
	}
	if _, err := Start("0.0.0.0:0", Config{}); err == nil {
		t.Error("Start accepted an address that is not loopback")
	}
}
