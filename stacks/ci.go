package stacks

// CICopyPrefix begins the name of every copy CI deploys: tests/deployed
// names its copies CICopyPrefix plus a unique id, so their stacks are
// "herald-<CICopyPrefix>*". The CI role may create and destroy only those,
// and the cleanup of copies (tests/deployed/cleanup) destroys only those.
const CICopyPrefix = "e2e"
