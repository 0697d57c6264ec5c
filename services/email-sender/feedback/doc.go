// Package feedback closes the loop after SES accepts a mail: it reads the
// events SES publishes for Herald's configuration set (Send, Delivery,
// Bounce, Complaint, Reject, DeliveryDelay, Rendering Failure) from the
// feedback queue, where SNS delivers them in its envelope, and records each
// recipient's outcome on the notification's status in the state store
// (delivered, bounced with type, subtype and diagnostic, complained,
// rejected, delayed).
//
// Each send carries the notification id as the SES message tag
// contract.SESNotificationTag, so an event finds its notification without a lookup.
// Applying an event is idempotent and order-independent (the store keeps
// the highest outcome per recipient), so SQS's repeats and SNS's disorder
// change nothing. A message that cannot be applied as it is (not SNS, not
// SES, an unknown event type, no tag, no such notification) goes to the
// feedback DLQ with the reason; a store failure leaves it on the queue.
//
// FEEDBACK.md beside this file has the event flow, the decisions and what
// the wiring step must do (settings, stacks, IAM, the transport's tag, the
// API's GET).
package feedback
