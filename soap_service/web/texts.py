"""The pickup pages' words in the four languages of the service."""

from __future__ import annotations

from soap_service.domain.model import Language

TEXTS: dict[Language, dict[str, str]] = {
    Language.DE: {
        "title": "Sichere Nachricht",
        "from": "Nachricht von {organisation}",
        "received": "Eingegangen",
        "available_until": "Verfügbar bis",
        "attachments": "Anhänge",
        "download": "Herunterladen",
        "html_version": "Formatierte Fassung",
        "language": "Sprache",
        "unknown.title": "Link ungültig",
        "unknown.text": "Dieser Link ist nicht gültig. Bitte prüfen Sie, ob er vollständig ist.",
        "expired.title": "Nachricht abgelaufen",
        "expired.text": "Diese Nachricht ist nicht mehr verfügbar: ihre Frist ist abgelaufen. "
        "Bitte wenden Sie sich an den Absender.",
        "withdrawn.title": "Nachricht zurückgezogen",
        "withdrawn.text": "Der Absender hat diese Nachricht zurückgezogen.",
        "needs-account.title": "Anmeldung erforderlich",
        "needs-account.text": "Diese Nachricht ist nur für die registrierte Empfängerin oder den "
        "registrierten Empfänger bestimmt und kann hier noch nicht geöffnet werden.",
        "unavailable.title": "Vorübergehend nicht verfügbar",
        "unavailable.text": "Der Dienst ist im Moment nicht erreichbar. Bitte versuchen Sie es "
        "in einigen Minuten noch einmal.",
        "error.title": "Fehler",
        "error.text": "Ein Fehler ist aufgetreten. Bitte versuchen Sie es später noch einmal.",
    },
    Language.FR: {
        "title": "Message sécurisé",
        "from": "Message de {organisation}",
        "received": "Reçu le",
        "available_until": "Disponible jusqu'au",
        "attachments": "Pièces jointes",
        "download": "Télécharger",
        "html_version": "Version mise en forme",
        "language": "Langue",
        "unknown.title": "Lien non valable",
        "unknown.text": "Ce lien n'est pas valable. Veuillez vérifier qu'il est complet.",
        "expired.title": "Message expiré",
        "expired.text": "Ce message n'est plus disponible : son délai est échu. "
        "Veuillez vous adresser à l'expéditeur.",
        "withdrawn.title": "Message retiré",
        "withdrawn.text": "L'expéditeur a retiré ce message.",
        "needs-account.title": "Connexion requise",
        "needs-account.text": "Ce message est réservé au destinataire enregistré et ne peut pas "
        "encore être ouvert ici.",
        "unavailable.title": "Temporairement indisponible",
        "unavailable.text": "Le service n'est pas joignable pour le moment. Veuillez réessayer "
        "dans quelques minutes.",
        "error.title": "Erreur",
        "error.text": "Une erreur s'est produite. Veuillez réessayer plus tard.",
    },
    Language.IT: {
        "title": "Messaggio sicuro",
        "from": "Messaggio di {organisation}",
        "received": "Ricevuto il",
        "available_until": "Disponibile fino al",
        "attachments": "Allegati",
        "download": "Scarica",
        "html_version": "Versione formattata",
        "language": "Lingua",
        "unknown.title": "Link non valido",
        "unknown.text": "Questo link non è valido. Verifichi che sia completo.",
        "expired.title": "Messaggio scaduto",
        "expired.text": "Questo messaggio non è più disponibile: il termine è scaduto. "
        "Si rivolga al mittente.",
        "withdrawn.title": "Messaggio ritirato",
        "withdrawn.text": "Il mittente ha ritirato questo messaggio.",
        "needs-account.title": "Accesso richiesto",
        "needs-account.text": "Questo messaggio è riservato al destinatario registrato e non può "
        "ancora essere aperto qui.",
        "unavailable.title": "Temporaneamente non disponibile",
        "unavailable.text": "Il servizio non è raggiungibile al momento. Riprovi tra qualche "
        "minuto.",
        "error.title": "Errore",
        "error.text": "Si è verificato un errore. Riprovi più tardi.",
    },
    Language.EN: {
        "title": "Secure message",
        "from": "Message from {organisation}",
        "received": "Received",
        "available_until": "Available until",
        "attachments": "Attachments",
        "download": "Download",
        "html_version": "Formatted version",
        "language": "Language",
        "unknown.title": "Invalid link",
        "unknown.text": "This link is not valid. Please check that it is complete.",
        "expired.title": "Message expired",
        "expired.text": "This message is no longer available: its time has run out. "
        "Please contact the sender.",
        "withdrawn.title": "Message withdrawn",
        "withdrawn.text": "The sender has withdrawn this message.",
        "needs-account.title": "Login required",
        "needs-account.text": "This message is for its registered recipient only and cannot be "
        "opened here yet.",
        "unavailable.title": "Temporarily unavailable",
        "unavailable.text": "The service cannot be reached at the moment. Please try again in a "
        "few minutes.",
        "error.title": "Error",
        "error.text": "Something went wrong. Please try again later.",
    },
}
