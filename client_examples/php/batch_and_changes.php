<?php
// A payroll run's batch with PHP's SoapClient: SendMessages, then the journal through
// GetStatusChanges (keep its NextCursor) and ListMessages. The interoperability test
// runs exactly this.
//
//   php batch_and_changes.php WSDL_URL USERNAME PASSWORD CA_FILE RUN_ID
//
// Sends three payslips of run RUN_ID, the second to an address the service refuses;
// prints one JSON object with each result, the changes seen and the run's listing.

declare(strict_types=1);

require __DIR__ . '/soap_client.php';

[$script, $wsdl, $username, $password, $caFile, $run] = array_slice($argv, 0, 6);
$client = soap_client($wsdl, $username, $password, $caFile);

$messages = [];
foreach (['anna.muster@example.ch', 'not an address', 'bert.beispiel@example.ch'] as $n => $to) {
    $messages[] = [
        'Reference' => sprintf('%s-%d', $run, $n + 1),
        'Type' => 'confidential',
        'Recipients' => ['Recipient' => [['Address' => $to]]],
        'Subject' => 'Lohnabrechnung Dezember',
        'TextBody' => 'Ihre Lohnabrechnung liegt bei.',
        'Attachments' => ['Attachment' => [[
            'FileName' => 'lohn.pdf',
            'ContentType' => 'application/pdf',
            'Content' => "%PDF-1.4\n" . random_bytes(2000),
        ]]],
    ];
}
// One result per message, in order: a Status, or this message's own Fault.
$results = [];
foreach ($client->SendMessages(['Message' => $messages])->SendMessagesResult->Result as $result) {
    $results[] = [
        'position' => $result->Position,
        'reference' => $result->Reference,
        'message_id' => isset($result->Status) ? $result->Status->MessageId : null,
        'fault' => isset($result->Fault) ? $result->Fault->Code : null,
    ];
}

// Every change since the start (or since the cursor you kept), a page at a time. A change
// shows once every database transaction begun before it has ended, a moment after the
// call that made it: a program that waits for its run's changes polls again, with the
// cursor it kept, until they are in (here: one "queued" per accepted message).
$accepted = count(array_filter($results, fn ($result) => $result['message_id'] !== null));
$changes = [];
$cursor = null;
for ($poll = 0; $poll < 50 && count($changes) < $accepted; $poll++) {
    if ($poll > 0) {
        usleep(200000);
    }
    do {
        $page = $client->GetStatusChanges(array_filter(['Cursor' => $cursor, 'PageSize' => 2]))
            ->GetStatusChangesResult;
        foreach ($page->Change ?? [] as $change) {
            $changes[] = [$change->Reference, $change->RecipientAddress, $change->State];
        }
        $cursor = $page->NextCursor; // store it: the next poll starts here
    } while ($page->HasMore);
}

$listed = [];
foreach ($client->ListMessages(['ReferencePrefix' => $run . '-'])->ListMessagesResult->Message ?? [] as $message) {
    $listed[] = [$message->Reference, $message->State];
}

echo json_encode([
    'results' => $results,
    'changes' => $changes,
    'listed' => $listed,
], JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES), "\n";
