"""The notification's words in the four languages of the service."""

from __future__ import annotations

from soap_service.domain.model import Language, MessageType

TEXTS: dict[Language, dict[str, str]] = {
    Language.DE: {
        "subject": "Sichere Nachricht von {organisation}",
        "intro": "{organisation} hat Ihnen eine {kind} Nachricht gesendet.",
        "read": "Lesen",
        "instructions": "Öffnen Sie die Nachricht mit der Schaltfläche «Lesen» oder diesem Link:",
        "fallback": "Fehlt die Schaltfläche, öffnen Sie die angehängte Datei message.html.",
        "until": "Die Nachricht ist bis am {expiry} abrufbar.",
        "registered": "Als eingeschriebene Nachricht muss sie bis dahin angenommen werden.",
        "secured": "(Gesichert durch {operator})",
        "signed": "Diese E-Mail ist von {operator} digital signiert: Ihr E-Mail-Programm kann "
        "zeigen, dass sie echt ist.",
        "offline": "Diese Datei war der Benachrichtigung angehängt. Der Link öffnet die Nachricht "
        "bei {operator}; dazu ist eine Internetverbindung nötig.",
        "imprint": "Impressum",
        "privacy": "Datenschutz",
        "footer": "Diese E-Mail enthält den Inhalt der Nachricht nicht. Bitte antworten Sie nicht.",
    },
    Language.FR: {
        "subject": "Message sécurisé de {organisation}",
        "intro": "{organisation} vous a envoyé un message {kind}.",
        "read": "Lire",
        "instructions": "Ouvrez le message avec le bouton «Lire» ou avec ce lien :",
        "fallback": "Si le bouton manque, ouvrez le fichier joint message.html.",
        "until": "Le message peut être consulté jusqu'au {expiry}.",
        "registered": "En tant que message recommandé, il doit être accepté d'ici là.",
        "secured": "(Sécurisé par {operator})",
        "signed": "Cet e-mail est signé numériquement par {operator} : votre logiciel de "
        "messagerie peut montrer qu'il est authentique.",
        "offline": "Ce fichier était joint à la notification. Le lien ouvre le message chez "
        "{operator} ; une connexion Internet est nécessaire.",
        "imprint": "Mentions légales",
        "privacy": "Protection des données",
        "footer": "Cet e-mail ne contient pas le message lui-même. Merci de ne pas y répondre.",
    },
    Language.IT: {
        "subject": "Messaggio sicuro da {organisation}",
        "intro": "{organisation} Le ha inviato un messaggio {kind}.",
        "read": "Leggere",
        "instructions": "Apra il messaggio con il pulsante «Leggere» o con questo link:",
        "fallback": "Se il pulsante manca, apra il file allegato message.html.",
        "until": "Il messaggio può essere consultato fino al {expiry}.",
        "registered": "Come messaggio raccomandato, deve essere accettato entro tale data.",
        "secured": "(Protetto da {operator})",
        "signed": "Questa e-mail è firmata digitalmente da {operator}: il Suo programma di posta "
        "può mostrare che è autentica.",
        "offline": "Questo file era allegato alla notifica. Il link apre il messaggio presso "
        "{operator}; occorre una connessione a Internet.",
        "imprint": "Note legali",
        "privacy": "Protezione dei dati",
        "footer": "Questa e-mail non contiene il messaggio stesso. Non risponda, per favore.",
    },
    Language.EN: {
        "subject": "Secure message from {organisation}",
        "intro": "{organisation} has sent you a {kind} message.",
        "read": "Read",
        "instructions": "Open the message with the Read button or with this link:",
        "fallback": "If there is no button, open the attached file message.html.",
        "until": "The message can be read until {expiry}.",
        "registered": "As a registered message, it must be accepted by then.",
        "secured": "(Secured by {operator})",
        "signed": "This e-mail is digitally signed by {operator}: your mail program can show "
        "that it is genuine.",
        "offline": "This file came attached to the notification. The link opens the message at "
        "{operator}; it needs an Internet connection.",
        "imprint": "Imprint",
        "privacy": "Privacy",
        "footer": "This e-mail does not contain the message itself. Please do not reply.",
    },
}

KINDS: dict[Language, dict[MessageType, str]] = {
    Language.DE: {
        MessageType.CONFIDENTIAL: "vertrauliche",
        MessageType.PERSONAL: "persönliche",
        MessageType.REGISTERED: "eingeschriebene",
    },
    Language.FR: {
        MessageType.CONFIDENTIAL: "confidentiel",
        MessageType.PERSONAL: "personnel",
        MessageType.REGISTERED: "recommandé",
    },
    Language.IT: {
        MessageType.CONFIDENTIAL: "confidenziale",
        MessageType.PERSONAL: "personale",
        MessageType.REGISTERED: "raccomandato",
    },
    Language.EN: {
        MessageType.CONFIDENTIAL: "confidential",
        MessageType.PERSONAL: "personal",
        MessageType.REGISTERED: "registered",
    },
}
