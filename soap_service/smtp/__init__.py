"""The SMTP channel: payroll programs and mail servers submit secure messages by mail.

An SMTP session (protocol.py, on aiosmtpd) requires STARTTLS and authentication; the
handler (session.py) checks each recipient as it comes and hands the mail to the domain
after DATA: its MIME (mime.py) becomes the same draft a SOAP client would send, and the
message goes through the same entry point (MessageService.send). replies.py is the one
place where errors become SMTP replies; server.py runs the sessions in one process.
"""
