package deployed

import "herald/services/contract"

// StateBucketVariable names the S3 bucket the suite's copies keep their
// Terraform state in (stacks.CopyStateBucketVariable); empty keeps it in a
// local file at the repository root. Remote state lets a later run destroy
// a copy whose runner was lost; the cleanup (tests/deployed/cleanup) reads
// the same variable.
const StateBucketVariable = contract.E2EStateBucket
