package contract

import "strings"

// Prefix starts every variable Herald defines.
const Prefix = "HERALD_"

// Variables of Herald's tools and tests, by the program that reads them.
// Each program parses its own; they are named here so that no HERALD_ name
// is spelled in two places.
const (
	// herald-ops: the API whose /readyz shows the key version in use, and
	// the stack outputs file (and the stack in it) it reads the rest from.
	OpsAPIURL  = "HERALD_API_URL"
	OpsOutputs = "HERALD_OUTPUTS"
	OpsStack   = "HERALD_STACK"

	// herald-dev (make dev): where it keeps binaries and logs, the listen
	// addresses it pins, the local SES account's rate, whether it echoes
	// the services' logs.
	DevDir         = "HERALD_DEV_DIR"
	DevAPIAddr     = "HERALD_DEV_API_ADDR"
	DevSenderAddr  = "HERALD_DEV_SENDER_ADDR"
	DevSQSAddr     = "HERALD_DEV_SQS_ADDR"
	DevSESAddr     = "HERALD_DEV_SES_ADDR"
	DevGateAddr    = "HERALD_DEV_GATE_ADDR"
	DevMaxSendRate = "HERALD_DEV_MAX_SEND_RATE"
	DevLogs        = "HERALD_DEV_LOGS"

	// The synth (main.go, stacks/): both mesh modes, a throwaway copy of
	// one environment and the bucket of its state.
	SynthMeshVariants    = "HERALD_SYNTH_MESH_VARIANTS"
	SynthCopy            = "HERALD_SYNTH_COPY"
	SynthCopyStateBucket = "HERALD_SYNTH_COPY_STATE_BUCKET"

	// The images a synth deploys: make push prints them, the synth reads
	// them (HERALD_<ENV>_API_IMAGE first, see EnvironmentImage).
	APIImage    = "HERALD_API_IMAGE"
	SenderImage = "HERALD_SENDER_IMAGE"

	// The deployed-stack tests (tests/deployed) and their cleanup: the
	// bucket of the copies' remote state.
	E2EStateBucket = "HERALD_E2E_STATE_BUCKET"

	// The deployed-stack workflow's repository variables
	// (.github/workflows/deployed.yml): the CI role it assumes (the stack
	// output ci_role_arn), its region, the GitHub environment it runs in.
	CIRoleARN     = "HERALD_AWS_ROLE_ARN"
	CIRegion      = "HERALD_AWS_REGION"
	CIEnvironment = "HERALD_CI_ENVIRONMENT"
)

// Image is the image variable of svc.
func Image(svc Service) string {
	if svc == Sender {
		return SenderImage
	}
	return APIImage
}

// EnvironmentImage is an image variable for one environment only:
// HERALD_API_IMAGE for "prod" is HERALD_PROD_API_IMAGE.
func EnvironmentImage(variable, environment string) string {
	return strings.Replace(variable, Prefix, Prefix+strings.ToUpper(environment)+"_", 1)
}
