<?php
// SendMessage and GetStatus with PHP's own SoapClient, over HTTPS, with a WS-Security
// UsernameToken. The interoperability test runs exactly this; copy it as a start.
//
//   php send_and_status.php WSDL_URL USERNAME PASSWORD CA_FILE REFERENCE FILE...
//
// Prints one JSON object: what SendMessage answered, the status with its times parsed,
// and the fault a GetStatus for an unknown message gets.

declare(strict_types=1);

require __DIR__ . '/soap_client.php';

[$script, $wsdl, $username, $password, $caFile, $reference] = array_slice($argv, 0, 6);
$files = array_slice($argv, 6);
$client = soap_client($wsdl, $username, $password, $caFile);

$attachments = [];
foreach ($files as $path) {
    $attachments[] = [
        'FileName' => basename($path),
        'ContentType' => 'application/pdf',
        'Content' => file_get_contents($path), // raw bytes: SoapClient encodes base64
    ];
}
// Document/literal wrapped: each answer is inside <Operation>Result.
$sent = $client->SendMessage([
    'Message' => [
        'Reference' => $reference,
        'Type' => 'confidential',
        'Recipients' => ['Recipient' => [
            ['Address' => 'anna.muster@example.ch'],
            ['Address' => 'bert.beispiel@example.ch'],
        ]],
        'Subject' => 'Lohnabrechnung November',
        'TextBody' => 'Ihre Lohnabrechnung liegt bei.',
        'Attachments' => ['Attachment' => $attachments],
        'Language' => 'de',
    ],
])->SendMessageResult;
$request = $client->__getLastRequest();

$status = $client->GetStatus(['MessageId' => $sent->MessageId])->GetStatusResult;
$recipients = [];
foreach ($status->Recipients->Recipient as $recipient) {
    $recipients[] = [
        'address' => $recipient->Address,
        'state' => $recipient->State,
        // xs:dateTime arrives as text: parsed here, printed back in one form.
        'state_changed_at' => (new DateTimeImmutable($recipient->StateChangedAt))->format(DATE_ATOM),
    ];
}

try {
    $client->GetStatus(['MessageId' => '00000000-0000-4000-8000-000000000000']);
    $fault = null;
} catch (SoapFault $error) {
    $fault = ['faultcode' => $error->faultcode, 'faultstring' => $error->faultstring];
}

echo json_encode([
    'message_id' => $sent->MessageId,
    'state' => $status->State,
    'accepted_at' => (new DateTimeImmutable($status->AcceptedAt))->format(DATE_ATOM),
    'expires_at' => (new DateTimeImmutable($status->ExpiresAt))->format(DATE_ATOM),
    'recipients' => $recipients,
    'fault' => $fault,
    'request' => $request,
], JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES), "\n";
