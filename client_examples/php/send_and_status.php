<?php
// SendMessage and GetStatus with PHP's own SoapClient, over HTTPS, with a WS-Security
// UsernameToken. The interoperability test runs exactly this; copy it as a start.
//
//   php send_and_status.php WSDL_URL USERNAME PASSWORD CA_FILE REFERENCE FILE...
//
// Prints one JSON object: what SendMessage answered, the status with its times parsed,
// and the fault a GetStatus for an unknown message gets.

declare(strict_types=1);

const WSSE = 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd';
const PASSWORD_TEXT = 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText';

function security_header(string $username, string $password): SoapHeader
{
    $xml = sprintf(
        '<wsse:Security xmlns:wsse="%s"><wsse:UsernameToken><wsse:Username>%s</wsse:Username>'
        . '<wsse:Password Type="%s">%s</wsse:Password></wsse:UsernameToken></wsse:Security>',
        WSSE,
        htmlspecialchars($username, ENT_XML1),
        PASSWORD_TEXT,
        htmlspecialchars($password, ENT_XML1)
    );
    return new SoapHeader(WSSE, 'Security', new SoapVar($xml, XSD_ANYXML));
}

function client(string $wsdl, string $username, string $password, string $caFile): SoapClient
{
    $context = stream_context_create([
        'ssl' => ['cafile' => $caFile, 'verify_peer' => true, 'verify_peer_name' => true],
    ]);
    $client = new SoapClient($wsdl, [
        'stream_context' => $context,
        'soap_version' => SOAP_1_1,
        'exceptions' => true,
        'trace' => true,
        'cache_wsdl' => WSDL_CACHE_NONE,
        'features' => SOAP_SINGLE_ELEMENT_ARRAYS,
    ]);
    $client->__setSoapHeaders([security_header($username, $password)]);
    return $client;
}

[$script, $wsdl, $username, $password, $caFile, $reference] = array_slice($argv, 0, 6);
$files = array_slice($argv, 6);
$client = client($wsdl, $username, $password, $caFile);

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
