// Package contract is the one description of what Herald's two halves agree
// on: the services' settings (each environment variable's name, type,
// default, bounds and parser, which service reads it and how a deployed
// task gets it), the metric names, units, dimensions and namespace, the
// ports and health paths, the API key secret's shape, and the names of the
// tools' own variables.
//
// Everyone who sets or reads a setting goes through it: the services read
// their configuration with ReadAPI and ReadSender, the stacks (stacks/)
// check an environment with the same parsers and bounds and name the
// variables they set from it, the local pipeline (services/devstack) sets
// variables through it, and services/README.md's tables are rendered from
// it (a test fails when they are stale). It imports nothing of Herald but
// the address rules (services/mailaddr), so stacks/ can import it.
//
// # Adding a setting
//
//  1. Declare it in settings.go with its kind (Text, Enum, Int, Float,
//     Duration, Addr, AllowListSetting): Name, ReadBy, Source (how a
//     deployed task gets it: Set, SetSecret, Tunable or Unset), When (the
//     condition, if the stack sets it only sometimes), Meaning (the README
//     sentence), default and bounds. Add it to the list in Settings.
//  2. Read it in ReadAPI or ReadSender (config.go) into the service's
//     Config, and check rules between settings there.
//  3. If the stacks set it (Set, SetSecret), set it in stacks/herald.go
//     with the setting's Format, and check the field it comes from with the
//     setting's Check in stacks/config.go.
//  4. Run go test ./services/contract -run README -update to render the
//     README tables, and go test ./services/contract ./stacks.
//
// The tests hold the three sides to one set: TestServicesReadTheContract
// (what ReadAPI and ReadSender look up is what ReadBy says),
// TestREADMEIsRendered (services/README.md) and, in stacks,
// TestServiceContract (every variable a task definition gets is the
// contract's, with a value the service's own reader accepts).
package contract
