package stacks

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"herald/services/contract"
)

// A service's task gets its settings as environment variables, named and
// formatted by services/contract, the package the services read them with.
// The environment's values are checked with the contract's parsers and
// bounds field by field (config.go), and then all together, as the service
// would read them at start (checkVariables), so an environment the service
// would refuse fails at synth instead of crash-looping its tasks.

// shutdownTimeout is HERALD_SHUTDOWN_TIMEOUT: the services drain within it,
// before ECS's stop timeout ends in SIGKILL.
const shutdownTimeout = stopTimeout - 5*time.Second

// unknownSecret stands for a secret's value the stack does not know (the
// SMTP credentials, set after deploy) when the variables are checked.
const unknownSecret = "set-after-deploy"

// taskVariables are one service's variables.
type taskVariables struct {
	// plain values go into the task definition.
	plain map[string]string
	// secrets map a variable to the ECS valueFrom it is resolved from at
	// start (an SSM parameter or Secrets Manager ARN).
	secrets map[string]string
	// resolved are the secrets' values, as far as the stack knows them
	// (the parameters it writes), for checking.
	resolved map[string]string
}

// variableSources are the stack's resources the variables name.
type variableSources struct {
	queueURL, dlqURL string
	// configurationSet is the SES configuration set's name, "" without one.
	configurationSet string
	// The parameters (ARNs) the API's default sender and key secret name,
	// and the sender's send rate, come from; the key secret's name.
	defaultFromParameter, keysSecretIDParameter, sendRateParameter string
	keysSecretName                                                 string
	// smtpSecretARN holds the SMTP credentials (smtp only).
	smtpSecretARN string
	// tableName is the state store; idSecretIDParameter (an ARN) holds the
	// name of the id secret, idSecretName.
	tableName                         string
	idSecretIDParameter, idSecretName string
	// The SES feedback path ("" without feedback) and the feedback queue's
	// visibility timeout.
	feedbackQueueURL, feedbackDLQURL, feedbackTopicARN string
	feedbackVisibility                                 time.Duration
}

// placeholderSources stand in for the stack's resources when an environment
// is validated before any is made: well-formed, so only the environment's
// own values are checked.
func placeholderSources(e Environment) variableSources {
	queue := fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s-notifications", e.Region, e.Account, StackID(e.Name, ""))
	param := fmt.Sprintf("arn:%s:ssm:%s:%s:parameter/%s/", partition(e.Region), e.Region, e.Account, StackID(e.Name, ""))
	src := variableSources{
		queueURL: queue, dlqURL: queue + "-dlq",
		defaultFromParameter: param + defaultFromName, keysSecretIDParameter: param + apiKeysSecretIDName, sendRateParameter: param + sendRateName,
		keysSecretName:      StackID(e.Name, "") + "/" + apiKeysSecret,
		smtpSecretARN:       fmt.Sprintf("arn:%s:secretsmanager:%s:%s:secret:%s/%s", partition(e.Region), e.Region, e.Account, StackID(e.Name, ""), smtpSecret),
		tableName:           StackID(e.Name, "") + tableSuffix,
		idSecretIDParameter: param + idSecretIDName,
		idSecretName:        StackID(e.Name, "") + "/" + idSecret,
	}
	if e.Email.ConfigurationSet {
		src.configurationSet = StackID(e.Name, "")
	}
	if e.Email.FeedbackEnabled() {
		src.feedbackQueueURL = queue[:strings.LastIndex(queue, "/")+1] + StackID(e.Name, "") + "-feedback"
		src.feedbackDLQURL = src.feedbackQueueURL + "-dlq"
		src.feedbackTopicARN = fmt.Sprintf("arn:%s:sns:%s:%s:%s-feedback", partition(e.Region), e.Region, e.Account, StackID(e.Name, ""))
		src.feedbackVisibility = contract.FeedbackVisibility.Default
	}
	return src
}

// allowedFrom is HERALD_ALLOWED_FROM of both services: the environment's
// allow-list, with the default sender when the list does not cover it (the
// sender reads no HERALD_DEFAULT_FROM).
func (em EmailConfig) allowedFrom() (contract.AllowList, error) {
	list, err := contract.AllowedFrom.Parse(strings.Join(em.AllowedFrom, ","))
	if err != nil || em.DefaultFrom == "" || list.Allows(em.DefaultFrom) {
		return list, err
	}
	return list.With(em.DefaultFrom)
}

// serviceVariables are both services' variables in an environment (with its
// defaults applied).
func serviceVariables(e Environment, src variableSources) (map[contract.Service]taskVariables, error) {
	allowed, err := e.Email.allowedFrom()
	if err != nil {
		return nil, err
	}
	common := func(svc ServiceConfig, service contract.Service) taskVariables {
		return taskVariables{
			plain: map[string]string{
				contract.EnvironmentName.Name: e.Name,
				contract.Region.Name:          e.Region,
				contract.QueueURL.Name:        src.queueURL,
				contract.HTTPAddr.Name:        contract.ListenAddr(service),
				contract.LogLevel.Name:        svc.LogLevel,
				contract.ShutdownTimeout.Name: contract.ShutdownTimeout.Format(shutdownTimeout),
				contract.AllowedFrom.Name:     allowed.String(),
				contract.StoreTable.Name:      src.tableName,
				contract.StatusTTL.Name:       contract.StatusTTL.Format(e.Store.StatusTTL),
			},
			secrets:  map[string]string{},
			resolved: map[string]string{},
		}
	}
	api := common(e.API, contract.API)
	api.plain[contract.MaxMessageBytes.Name] = contract.MaxMessageBytes.Format(e.Queue.MaxMessageBytes)
	// While the store fails, each task limits a key to the limit divided by
	// this: the most tasks that may run, so the whole service never exceeds
	// the documented limit however far it has scaled.
	api.plain[contract.RateTasks.Name] = contract.RateTasks.Format(e.API.MaxTasks)
	// The key-hash secret's name comes from a parameter as well: trivy
	// (AWS-0036) flags every plain variable whose name contains SECRET or
	// KEY, so the variable stays out of the container definitions and the
	// check stays on for the rest.
	api.secret(contract.DefaultFrom.Name, src.defaultFromParameter, e.Email.DefaultFrom)
	api.secret(contract.APIKeysSecretID.Name, src.keysSecretIDParameter, src.keysSecretName)
	api.secret(contract.IDSecretID.Name, src.idSecretIDParameter, src.idSecretName)

	sender := common(e.Sender, contract.Sender)
	maps.Copy(sender.plain, map[string]string{
		contract.DLQURL.Name:            src.dlqURL,
		contract.Transport.Name:         e.Email.Transport,
		contract.WaitTime.Name:          contract.WaitTime.Format(queueWaitTime),
		contract.VisibilityTimeout.Name: contract.VisibilityTimeout.Format(e.Email.VisibilityTimeout()),
		contract.SendTimeout.Name:       contract.SendTimeout.Format(e.Email.SendTimeout),
		contract.RetryWindow.Name:       contract.RetryWindow.Format(e.Queue.RetryWindow),
		// Each task starts at the quota divided by this; autoscaling makes
		// it a seed the tasks adapt from, not a truth.
		contract.SenderTasks.Name: contract.SenderTasks.Format(e.Sender.MinTasks),
	})
	sender.secret(contract.SendRate.Name, src.sendRateParameter, contract.SendRate.Format(e.Email.SendRate))
	switch e.Email.Transport {
	case "ses":
		if src.configurationSet != "" {
			sender.plain[contract.SESConfigurationSet.Name] = src.configurationSet
		}
		if src.feedbackQueueURL != "" {
			maps.Copy(sender.plain, map[string]string{
				contract.FeedbackQueueURL.Name:   src.feedbackQueueURL,
				contract.FeedbackDLQURL.Name:     src.feedbackDLQURL,
				contract.FeedbackTopicARN.Name:   src.feedbackTopicARN,
				contract.FeedbackVisibility.Name: contract.FeedbackVisibility.Format(src.feedbackVisibility),
			})
		}
	case "smtp":
		sender.plain[contract.SMTPAddr.Name] = e.Email.SMTPAddr
		sender.secret(contract.SMTPUsername.Name, src.smtpSecretARN+":username::", unknownSecret)
		sender.secret(contract.SMTPPassword.Name, src.smtpSecretARN+":password::", unknownSecret)
	}
	// Tuning last: only tunable variables pass validation, so it never
	// overrides what the stack sets.
	maps.Copy(api.plain, e.API.Tuning)
	maps.Copy(sender.plain, e.Sender.Tuning)
	return map[contract.Service]taskVariables{contract.API: api, contract.Sender: sender}, nil
}

func (t taskVariables) secret(name, valueFrom, value string) {
	t.secrets[name] = valueFrom
	t.resolved[name] = value
}

// check reads the variables as the service does at start.
func (t taskVariables) check(service contract.Service) error {
	lookup := func(name string) string {
		if v, ok := t.plain[name]; ok {
			return v
		}
		return t.resolved[name]
	}
	var err error
	switch service {
	case contract.API:
		_, err = contract.ReadAPI(lookup)
	case contract.Sender:
		_, err = contract.ReadSender(lookup)
	}
	return err
}

// names are the variables the task gets, plain and secret, sorted.
func (t taskVariables) names() []string {
	names := slices.Collect(maps.Keys(t.plain))
	names = slices.AppendSeq(names, maps.Keys(t.secrets))
	slices.Sort(names)
	return names
}
