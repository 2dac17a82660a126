"""The Twilio adapter: text messages and calls through Twilio's REST API.

* :mod:`~mfa_radius.adapters.twilio.sender`: ``TwilioMessageSender``, the
  :class:`~mfa_radius.ports.MessageSender` on the twilio SDK, the only module that imports the
  SDK's REST client.
* :mod:`~mfa_radius.adapters.twilio.twiml`: the TwiML documents of the proxy's calls and of
  the webhook's reply, pure functions of the standard library.

TwiML is Twilio's markup, so it is built here and nowhere else: the login engine hands the port
domain values (``CodeCall``, ``ApproveCall``), and the webhook listener imports the reply
document and the approve URL from :mod:`~mfa_radius.adapters.twilio.twiml` so that the URL
Twilio signs is the one the call was given. Nothing is re-exported here, so that importing the
TwiML builders does not load the SDK's REST client.
"""
