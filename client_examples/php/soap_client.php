<?php
// A SoapClient for soap-service: HTTPS with the given CA, SOAP 1.1, a WS-Security
// UsernameToken (PasswordText) on every call.

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

function soap_client(string $wsdl, string $username, string $password, string $caFile): SoapClient
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
        // Lists of one stay lists (a batch of one, a page with one change).
        'features' => SOAP_SINGLE_ELEMENT_ARRAYS,
    ]);
    $client->__setSoapHeaders([security_header($username, $password)]);
    return $client;
}
