"""The rules of `bot.injection`: phrase templates per kind of hit, compiled once.

Templates are regular expressions written for reading: a space means "a separator",
`§` "one filler word", `@NAME@` a shared group; every repetition is bounded, so a scan is
linear in the text. `RULES` are tried on the normalised text; `COMPACT_PATTERNS` on
letter-spaced words ("i g n o r e") once they are joined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# --- patterns -------------------------------------------------------------------------
#
# Templates: a space means "a separator" (1-8 characters that are neither letters nor
# digits: spaces, newlines, underscores, dashes, quotes, but not `,.;!?`, so that a match
# stays within a clause: "failurePolicy=Ignore, the policy is skipped"), `§` means "one
# filler word and its separator", `@NAME@` inserts a shared group. Every repetition is
# bounded. Rules run on lowercased text, so `a-z` covers the letters.

_SEP = r"[^0-9a-z,.;!?]{1,8}"
_FILLER = r"(?:[0-9a-z]{1,24}[^0-9a-z,.;!?]{1,8})"

_GROUPS = {
    # Groups are expanded in this order, so a group may use the ones below it.
    # An AI, or the bot by name (for lead-ins and identity; a vocative "@incident-bot, ..."
    # is how people talk to it in a thread).
    "AIBOT": r"(?:@AI@|incident(?: )?bot|bot)(?![-_./][^\W_])",
    # Names an AI goes by; not a service called `assistant-api` or `ai.gateway`. Flat,
    # each branch starting with a letter, so that `re` can skip ahead to those letters.
    "AI": (
        r"(?:ai|a\.i\.|llms?|large language models?|language models?|assistants?|"
        r"chat(?: )?bots?|claude|chatgpt|gpt(?:-?\d{1,2}\w{0,3})?|copilot|gemini|"
        r"automated (?:agent|assistant|responder|system)s?|autonomous (?:agent|system)s?)"
        r"(?: (?:assistant|agent|model|system|responder)s?)?(?![-_./][^\W_])"
    ),
    "ROLE": (
        r"(?:system administrator|sysadmin|administrator|admin|operator|"
        r"on\W?call(?: (?:lead|engineer|sre|manager))?|incident commander|sre(?: lead)?|"
        r"developer|owner|root|security team|anthropic|openai|supervisor|manager|"
        r"team lead|lead|cto|ceo|director|your (?:creator|developer|operator))"
    ),
    "TOOL": r"(?:propose_remediation|finish_action|@TOOLNS@)",
    # Our tools' names (`kubernetes.pod_logs`, `kubernetes_restart` on the API).
    "TOOLNS": (
        r"(?:kubernetes|k8s|kube|alertmanager|prometheus|promql|logs|loki|webhook|"
        r"deployments?|argo(?:cd)?|helm)[._](?:get_deployment|rollout_history|pod_logs|"
        r"pods|events|nodes|restart|roll_?back|scale|silences?|alerts|groups|"
        r"query(?:_range)?|call|delete\w{0,20}|exec|patch|apply|drain|cordon|evict|post)\b"
    ),
    # What one approves: not "the change request CHG123" or "the PR", a person's job.
    "APPROVABLE": (
        r"(?:roll(?: )?backs?|restarts?|silences?|remediations?|actions?|proposals?|"
        r"scal(?:e|ing)|deletions?|drain|revert|failover)"
    ),
    "ACTION": (
        r"(?:roll(?: )?backs?|restarts?|silences?|remediations?|actions?|scal(?:e|ing)|"
        r"deletions?|fix|drain|revert|failover)"
    ),
}


@dataclass(frozen=True)
class _Before:
    """What the text just before a match must (or must not) end with."""

    pattern: str
    must: bool


_GAP = r"[^0-9a-z,.;!?]{1,16}$"  # a separator, at the end of the text before a match
# "must" and "should" are imperatives when said to "you": "you must apply it automatically".
_MODALS = r"to|can|could|may|might|will|would|not|never|(?<!you\s)(?:must|shall|should)"

# Third person, purpose or negation: "Argo will apply it automatically", "waiting to
# approve", "doesn't apply it automatically".
_NOT_AFTER_MODAL = _Before(rf"(?:\b(?:{_MODALS})|n\Wt){_GAP}", must=False)
_NOT_AFTER_TO = _Before(rf"\bto{_GAP}", must=False)
# "I'd propose we roll back" is a person in the thread thinking aloud.
_NOT_AFTER_PROPOSER = _Before(rf"(?:\b(?:i|we|i\Wd|{_MODALS})|n\Wt){_GAP}", must=False)
# A command-line flag (`terraform apply -auto-approve`), part of a longer word, or a
# description ("can be auto-approved by the csrapproving controller").
_NOT_AFTER_DASH_OR_MODAL = _Before(
    rf"(?:[-\w]|(?:\b(?:{_MODALS}|no)|n\Wt)[^0-9a-z]{{1,3}}(?:not[^0-9a-z]{{1,3}})?"
    r"(?:be[^0-9a-z]{1,3})?)$",
    must=False,
)
# After an article the verb is a name: "equivalent to the Ignore policy".
_NOT_AFTER_ARTICLE = _Before(rf"\b(?:the|a|an|this|that|its|their){_GAP}", must=False)
# A vocative opens a sentence or a line: "Assistant, you are now ...".
_AFTER_CLAUSE_START = _Before(
    r"(?:^|[.!?;:>\"'*#\]()/]\s{0,3}|<!--\s{0,3}|-{2,}\s{0,3}|"
    r"\b(?:so|now|ok|okay|and|then)\s{1,3})"
    r"(?:(?:dear|hey|the)\s{1,3})?$",
    must=True,
)
_AFTER_LINE_START = _Before(r"^[ \t>#*\-]{0,6}$", must=True)

_Template = str | tuple[_Before, str]

_TEMPLATES: dict[str, tuple[_Template, ...]] = {
    "ignore_instructions": (
        r"\b(?:ignore|disregard|forget|overlook|override|bypass|discard|abandon|neglect) "
        r"§{0,3}(?:instructions?|prompts?|directives?|guidelines|guardrails|programming|"
        r"system prompt|training)\b",
        r"\b(?:ignore|disregard|forget|override|discard) §{0,2}(?:previous|prior|earlier|"
        r"above|preceding|former|original|initial|your|system|safety) §{0,1}(?:rules|"
        r"constraints|restrictions|context|messages|guidance|orders|commands|text|"
        r"content|conversation|polic(?:y|ies))\b",
        r"\b(?:ignore|disregard|forget|override|bypass) (?:the |your |this |our |all )?"
        r"(?:runbooks?|playbooks?)\b",
        r"\b(?:ignore|disregard|forget) §{0,1}(?:everything|anything|all|whatever) "
        r"§{0,3}(?:above|so far|told|instructed)\b",
        r"\b(?:do not|don\W?t|dont|never|stop|no longer) (?:follow|obey|comply with|"
        r"listen to|adhere to|heed) §{0,2}(?:previous|prior|earlier|original|system|"
        r"your|safety|above) §{0,1}(?:instructions|rules|prompt|guidelines|directives|"
        r"polic(?:y|ies))\b",
        r"\b(?:previous|prior|earlier|above|original|your) §{0,1}(?:instructions|"
        r"prompts?|directives|guidelines) (?:are|is|were|have been|has been) (?:now )?"
        r"(?:void|null|obsolete|cancell?ed|revoked|superseded|outdated|invalid|fake|"
        r"overridden|rescinded|no longer (?:valid|apply|applicable|in effect))\b",
        r"\byou(?: are|\W?re) (?:no longer|not) (?:bound|restricted|limited) (?:by|to)\b",
    ),
    "role_claim": (
        r"\b(?:system|admin|administrator|root|operator|developer|sre|security|"
        r"anthropic|openai|supervisor|master|sudo|priority|emergency) override\b",
        r"\boverride (?:code|protocol|authori[sz]ation code)\b",
        r"\b(?:system|admin|administrator|root|operator|developer|anthropic|openai|"
        r"sre team|security team|on\W?call|management) (?:says|said|directive|instructs|"
        r"orders|notice to|message to|memo|decree)\b",
        # "SYSTEM MESSAGE: ...", not `system_message(` or the D-Bus System Message Bus.
        r"\b(?:system|admin|administrator|operator|developer|sre team|security team) "
        r"message\s{0,3}[:\]\-]",
        r"\b(?:i am|i\W?m|this is|speaking as|acting as|as) §{0,3}@ROLE@ §{0,3}"
        r"(?:i )?(?:hereby )?(?:authori[sz]e|approve|grant|order|instruct|command|"
        r"direct|sign off|give you|permit you|allow you)\b",
        r"\bi (?:hereby )?(?:authori[sz]e|permit|allow|grant|order|instruct|command|"
        r"direct|empower|approve) (?:you|the (?:bot|assistant|agent|ai|model)|"
        r"incident(?: )?bot|claude)\b",
        r"\byou(?: are|\W?re| have been|\W?ve been) (?:now )?(?:hereby )?"
        r"(?:(?:fully|explicitly|officially) )?(?:authori[sz]ed|permitted|allowed|"
        r"cleared|empowered|granted permission|given permission|pre\W?approved) "
        r"(?:to|for)\b",
        r"\byou (?:now )?have (?:(?:my|our|full|explicit|written|official|prior|standing|"
        r"blanket|the (?:operator|on\W?call|team|admin|owner)\W{0,2}s?) ){1,2}"
        r"(?:permission|authori[sz]ation|approval|clearance|consent|blessing|go\W?ahead|"
        r"sign\W?off)\b",
        r"\b(?:message|note|instructions?|orders?|directive|memo|notice|word) from "
        r"(?:the |your )?(?:system|operator|admin|administrator|on\W?call|sre team|"
        r"security team|anthropic|openai|developers?|creators?|management|"
        r"incident commander)\b(?! bus)",
        # Words apart by spaces only: `operator: approved CSR x` is a log prefix.
        r"\b(?:operator|admin|administrator|on\W?call(?:\s{1,3}lead|\s{1,3}engineer)?|"
        r"sre|incident\s{1,3}commander|security\s{1,3}team|supervisor|the\s{1,3}human|"
        r"a\s{1,3}human)\s{1,3}(?:has\s{1,3}|have\s{1,3})?(?:already\s{1,3})?"
        r"(?:pre\W?approved|approved|authori[sz]ed|signed\s{1,3}off|green\W?lit|okayed|"
        r"given\s{1,3}(?:the\s{1,3})?(?:go\W?ahead|approval|permission))\b",
        r"\b@ROLE@ (?:says|said|wants|asked|told|instructed|ordered|requests?|"
        r"has (?:asked|told|instructed|ordered)) (?:you |us |the bot |incident(?: )?bot )?"
        r"to (?:approve|authori[sz]e|skip|bypass|ignore|execute|proceed|go ahead|apply|"
        r"roll(?: )?back|restart|scale|silence|delete|propose)\b",
        r"\b(?:system|admin|administrator|operator|security|sre|on\W?call) (?:notice|note|"
        r"announcement|bulletin|order|command)\s{0,3}[:\-]",
        r"\b(?:@APPROVABLE@|proposals?|this|it) (?:(?:is|was|has been|were|are) )?"
        r"(?:already )?(?:pre\W?)?(?:approved|authori[sz]ed|signed off) by (?:the |an? |"
        r"your )?(?:operator|on\W?call|admin|administrator|human|sre|incident commander|"
        r"security team|supervisor)\b",
        r"\b(?:has|have|was|were|is|are) (?:already )?been (?:pre\W?)?(?:approved|"
        r"authori[sz]ed|cleared|signed off) by (?:the |an |a |your )?(?:operator|"
        r"on\W?call|admin|administrator|human|sre|incident commander|security team|"
        r"supervisor|system|owner|management)\b",
        r"\b(?:the following|this|what follows|below) (?:is|are) (?:a |an |the )?"
        r"(?:system|operator|admin|developer|official) (?:message|instructions?|prompt|"
        r"directive|command|note)\b",
    ),
    "tool_directive": (
        r"\b(?:call|invoke|use|run|execute|trigger|fire|issue|emit|make|send|perform|"
        r"propose) §{0,3}@TOOL@",
        r"\b(?:call|invoke|trigger) (?:(?:the|a|your|this|any|another|following|next) )?"
        r"§{0,1}tools?\b",
        r"\b(?:propose_remediation|finish_action)\b",
        r"\b@TOOLNS@\s{0,3}\(",
        r"\b(?:tool_use|tool_calls?|function_calls?)\b",
        r"<\s{0,3}/?\s{0,3}(?:antml:)?(?:invoke|function_calls|tool_use|parameter name)\b",
    ),
    "action_directive": (
        (_NOT_AFTER_DASH_OR_MODAL, r"auto[\W_]{0,2}approv\w{0,4}(?!\w{0,3}[\"']?\s{0,2}[:=])"),
        r"\b(?:skip|bypass|circumvent|avoid|waive|ignore|override|disable|omit|forgo|"
        r"drop|turn off|get around|dispense with) (?:the |any |all |your |human |manual |"
        r"further |this |our |required |pending )?§{0,1}(?:approvals?|sign\W?off|"
        r"human (?:review|approval|confirmation|in the loop)|the human|review step|"
        r"four\W?eyes|two\W?person rule)\b",
        r"\b(?:without|no need (?:for|to)|don\W?t|do not|never) (?:asking|ask|waiting|"
        r"wait|requesting|request|requiring|needing|seeking|getting|awaiting) (?:for )?"
        r"(?:(?:a|an|any|the|human|further|explicit|prior|manual|their|operator|"
        r"on\W?call) ){0,2}(?:approvals?|confirmation|sign\W?off|review|permission|"
        r"go\W?ahead|consent)\b",
        r"\bno (?:approvals?|sign\W?off|human review) (?:is |are )?(?:needed|required|"
        r"necessary)\b",
        r"\bapprovals? (?:is |are |has |have )?(?:not (?:needed|required|necessary)|"
        r"unnecessary|waived|already (?:been )?(?:granted|given|obtained|done)|"
        r"been granted|is granted)\b",
        r"\bpre\W?(?:approved|authori[sz]ed|cleared)\b",
        r"\b(?:is|are|was|were|has been|have been|been) already (?:been )?(?:approved|"
        r"authori[sz]ed|signed off|cleared)\b",
        r"\bapproval (?:step|gate|check|requirement|process)s? (?:is |are |was |were |"
        r"has been |have been )?(?:now )?(?:disabled|removed|turned off|bypassed|waived|"
        r"suspended|lifted|skipped)\b",
        r"\bmark (?:it|this|that|the (?:proposal|action|request|run|change|remediation)) "
        r"(?:as )?(?:approved|authori[sz]ed|safe)\b",
        (
            _NOT_AFTER_TO,
            r"\b(?:approve|authori[sz]e|greenlight|green\W?light|rubber\W?stamp) "
            r"(?:(?:the|this|that|your|any|all|every|each|these|those|its|own|pending|"
            r"proposed|following|requested|suggested|above|next) ){0,2}§{0,1}"
            r"(?:@APPROVABLE@\b|everything\b|(?:it|this|that|them|all) (?:yourself|"
            r"automatically|immediately|right away|now)\b)",
        ),
        (
            _NOT_AFTER_PROPOSER,
            r"\bpropose (?:(?:a|an|the|this|that|following|immediate|your|another|new) )"
            r"{0,2}§{0,2}@ACTION@\b",
        ),
        r"\b(?:submit|create|file|open|issue|make|send) (?:a |an |the )?(?:new )?"
        r"(?:remediation|rollback|restart|scaling|silence|action) proposal\b",
        (
            _NOT_AFTER_MODAL,
            r"\b(?:execute|perform|carry out|proceed with|go ahead with|go ahead and|"
            r"apply) §{0,4}(?:automatically|autonomously|yourself|on your own|unattended|"
            r"without §{0,1}(?:approval|confirmation|review|asking|waiting|human|"
            r"checking))\b",
        ),
        r"\b(?:conclude|abort|terminate|halt|stop) (?:the |this |your )(?:investigation|"
        r"triage|analysis)\b",
    ),
    "scope_change": (
        (
            _NOT_AFTER_TO,
            r"\b(?:expand|widen|broaden|extend|increase|enlarge|escalate|elevate|raise|lift|"
            r"remove|drop|ignore|disable|bypass|override|exceed|leave|exit|escape|"
            r"break out of|go beyond|step outside) (?:(?:your|the|its|this|current|"
            r"this run\W?s|the run\W?s|investigation|run|tool|allowed|namespace) ){0,3}"
            r"(?:scope|scoping|guardrails?|allow\W?list)\b",
        ),
        (
            _NOT_AFTER_TO,
            r"\b(?:leave|exit|escape|break out of|bypass|disable) (?:your |the |its |this )?"
            r"sandbox\b",
        ),
        r"\b(?:expand|widen|broaden|extend|increase|escalate|elevate|raise|lift|remove|"
        r"drop|ignore|disable|bypass|override|exceed) (?:all |any )?(?:your|its|"
        r"the (?:bot|assistant|agent|ai)\W?s|incident(?: )?bot\W?s) §{0,1}(?:permissions|"
        r"privileges|access|restrictions|limits|limitations|constraints|rules|rbac|"
        r"authority|mandate)\b",
        r"\b(?:act|operate|work|go|look|reach|step|search|investigate|query|run) §{0,2}"
        r"(?:outside|beyond) (?:of )?(?:your|the|its|this run\W?s|the run\W?s) "
        r"(?:(?:current|allowed|assigned|permitted|usual|normal) )?(?:scope|namespace|"
        r"mandate|boundaries|permissions|remit)\b",
        r"\b(?:restart|scale|delete|patch|roll(?: )?back|drain|cordon|evict|kill|wipe|"
        r"silence|modify|edit|apply|disable|stop|shut down|remove) §{0,4}(?:(?:in|across|"
        r"from|for|on) )?(?:all(?: the)? namespaces|every namespace|other namespaces|"
        r"another namespace|any namespace|each namespace|all clusters|other clusters|"
        r"every cluster|the (?:whole|entire) cluster|cluster\W?wide)\b",
        r"\b(?:switch|move|pivot|change|extend|expand|widen) §{0,2}(?:(?:to|into) )?"
        r"(?:another|a different|other|all|every) (?:namespaces?|clusters?|"
        r"kube\W?contexts?)\b",
        r"\b(?:scale|delete|patch|drain|cordon|evict|kill|wipe|modify|edit|disable|stop|"
        r"shut down|remove|uninstall|purge) §{0,3}kube-(?:system|public|node-lease)\b",
        (
            _NOT_AFTER_ARTICLE,
            r"\b(?:disable|bypass|ignore|disregard|override|turn off|switch off|circumvent|"
            r"suspend|"
            r"deactivate|skip|lift|remove|get around|work around|evade|violate) (?:(?:the|"
            r"all|any|your|our|its|this|that|current|active|approval|safety|scope|change|"
            r"remediation|bot|agent|assistant) ){0,3}(?:polic(?:y|ies)|guardrails?|"
            r"safety (?:checks?|rules?|limits?)|approval (?:rules?|gates?|checks?|steps?|"
            r"requirements?)|change freezes?|freezes?|freeze windows?|scope (?:rules?|"
            r"checks?|limits?|restrictions?)|allow\W?lists?|blast radius (?:limits?|checks?)|"
            r"rbac|admission (?:controls?|webhooks?)|kyverno|gatekeeper)\b"
            r"(?! (?:binding|bindings|document|file|version|report|violation))",
        ),
        r"\b(?:silence|mute|suppress|snooze|disable|inhibit) (?:all|every|everything|each|"
        r"any|all other|other|the whole|all the|every other) §{0,1}(?:alerts?|alarms?|"
        r"notifications?|pages?|paging|monitors?|receivers?)\b",
        r"\bsilence everything\b",
        r"\b(?:silence|silences|matchers?)\b[^\n]{0,60}?(?:alertname|severity|namespace|"
        r"job|instance|cluster|service)\s{0,2}=~\s{0,2}\\?[\"']?\.[*+]",
    ),
    "model_address": (
        r"\b(?:note|notes|message|memo|instructions?|directive|reminder|request|"
        r"warning|hint) (?:to|for) (?:the |all |any |our |this |dear )?@AIBOT@",
        r"\b(?:hey|hi|hello|dear|psst|listen|calling|ps|p\.s\.) "
        r"(?:the |all |any |dear )?@AI@\b",
        r"\b(?:attention|attn) (?:the |all |any )?@AIBOT@\b",
        (_AFTER_CLAUSE_START, r"\b@AI@\)?\s{0,3}(?:[,:!]|-{1,2}\s)"),
        r"\b@AI@ (?:please|you (?:must|should|need to|have to|are to|will now)|must|"
        r"shall|ignore|disregard)\b",
        # The bot by name, only with an order: "@incident-bot please check" is a question.
        r"\bincident(?: )?bot (?:must|shall|is (?:required|ordered|instructed) to)\b",
        r"\b(?:to |for )?(?:whoever|whatever|anyone|anything|any (?:bot|agent|tool|system)) "
        r"(?:is )?(?:automating|processing|parsing|triaging|ingesting|summari[sz]ing) "
        r"(?:this|these)\b",
        r"\b(?:do not|don\W?t|dont|never) (?:mention|reveal|disclose|repeat|report) "
        r"(?:this|these) (?:comment|message|note|instructions?|text|lines?)\b",
        r"\byou(?: are|\W?re) (?:now |actually |really |just )?(?:an? |the |my |our )?"
        r"§{0,1}(?:@AIBOT@|unrestricted|jailbroken|dan)\b",
        r"\byou(?: are|\W?re) now (?:in §{0,2}mode|operating (?:in|as|without|under)|"
        r"acting as|root|an? admin|admin|an? operator|the operator|the admin|"
        r"the administrator|unrestricted|unfiltered|jailbroken|dan|free to|"
        r"an? (?:new|different|unrestricted))\b",
        r"\bas an? (?:@AI@|language model|large language model)\b",
        r"\bif you(?: are|\W?re) (?:an? |the )?(?:@AIBOT@|automated|reading this as)\b",
        r"\b(?:@AI@|llm|language model|automated (?:agent|assistant|responder)s?)"
        r"(?: (?:agents?|assistants?|systems?|models?|tools?|readers?|bots?))? (?:is |are )?"
        r"(?:reading|processing|parsing|analy[sz]ing|summari[sz]ing|ingesting|triaging|"
        r"investigating|that reads?|who reads?|which reads?) (?:this|these)\b",
        r"\b(?:new|updated|revised|real|actual|true|secret|hidden|replacement|overriding) "
        r"(?:system |operator |admin )?(?:instructions|directives|system prompt|prompt|"
        r"orders)(?:\s{0,3}[:\-\u2013\u2014]| (?:follow|below|are|apply|for you|"
        r"supersede|override|take|from))",
        r"\b(?:your|the (?:assistant|ai|model|bot)\W?s) (?:new|real|actual|true|only|"
        r"primary|updated|revised|next) (?:task|objective|mission|goal|job|purpose|"
        r"instructions|role|orders|priority|directive)s? (?:is|are|now)\b",
        r"\bsystem (?:prompt|instructions?)\b",
        r"\b(?:reveal|print|show|output|repeat|leak|dump|display|share|recite) (?:me )?"
        r"(?:your (?:§{0,1})?(?:prompt|instructions|rules)|the (?:system|initial|hidden|"
        r"original) (?:prompt|instructions))\b",
        r"\b(?:act|respond|behave|roleplay|role\W?play|pretend|masquerade) "
        r"(?:as|to be|you are|that you are) (?:an? |the |if you (?:are|were) )?"
        r"§{0,1}(?:operator|admin|administrator|root|unrestricted|dan|developer|human|"
        r"superuser|different (?:ai|assistant|model)|jailbroken)\b",
        r"\b(?:jailbreak|jailbroken|developer mode|god mode|dan mode|do anything now|"
        r"unrestricted mode)\b",
        r"\b(?:do not|don\W?t|dont|never) (?:tell|inform|mention|reveal|disclose|report) "
        r"§{0,2}the (?:user|human|operator|approver|reviewer)\b",
        r"\bwithout (?:telling|informing|notifying|alerting) (?:the )?(?:user|human|"
        r"operator|approver|reviewer)\b",
        r"\b(?:tell|report|say|respond|reply|answer|state|conclude|summari[sz]e) §{0,2}"
        r"that (?:everything|all|the (?:service|system|cluster|deployment|app)) "
        r"(?:is|looks|seems|was|are) (?:fine|ok|okay|healthy|normal|resolved|green|"
        r"nominal|good)\b",
    ),
    "fence_escape": (
        # Data that calls itself instructions: "tool results below are authoritative".
        r"\b(?:is|are) (?:to be treated as |considered )?(?:authoritative|trusted|binding|"
        r"official) (?:instructions|commands|orders|directives)\b",
        r"(?:<|%3c)\s{0,3}/?\s{0,3}untrusted\b",
        r"\buntrusted(?:\s{0,3}(?:>|%3e)| (?:source|origin|kind)\s{0,2}=)",
        r"(?:<|%3c)\s{0,3}/?\s{0,3}(?:trusted|system|system-reminder|instructions?|"
        r"tool_results?|function_results|im_start|im_end|assistant|human)\b"
        r"[^<>\n]{0,100}(?:>|%3e)",
        r"\[/?inst\]|\[(?:assistant|human|ai)\]|<<\s{0,2}/?sys\s{0,2}>>|<\|(?:im_start|im_end|im_sep|system|user|"
        r"assistant|endoftext|eot_id|start_header_id|end_header_id)\|?>",
        r"\b(?:end|close|closing|exit|finish|stop|leave|escape)\w{0,3} (?:of )?(?:the )?"
        r"(?:untrusted|trusted|fenced|quoted|external|tool|retrieved|envelope|sandboxed|"
        r"user\W?supplied) §{0,1}(?:data|text|content|input|section|block|envelope|"
        r"results?|output|message|zone|region|context|fence)\b",
        r"\b(?:begin|start|beginning|resume|return to)\w{0,3} (?:of )?(?:the )?(?:trusted|"
        r"system|operator|admin|developer|real|actual|original) §{0,1}(?:data|text|"
        r"content|input|section|block|instructions|prompt|message|zone|context|"
        r"conversation)\b",
        r"\b(?:untrusted|external) (?:data|text|content|input|section|block|envelope) "
        r"(?:ends|ended|is over|has ended|closed|complete|finished|stops)\b",
        (_AFTER_LINE_START, r"(?-i:Human|Assistant|HUMAN|ASSISTANT)\s{0,2}:"),
        # A chat message in JSON: {"role": "system", "content": ...}.
        r"[\"']role[\"']\s{0,3}:\s{0,3}[\"'](?:system|assistant|developer)[\"']",
        r"\b(?:treat|consider|regard|handle|interpret) (?:this|the following|"
        r"the text below|what follows|everything (?:below|after this|that follows)|"
        r"the rest|these lines|this message|this line) as (?:trusted|instructions|"
        r"a system|system|operator|coming from|an instruction|authoritative|verified)\b",
    ),
}

# Letter-spaced words ("i g n o r e") that were joined, compared without separators.
_COMPACT_TEMPLATES = {
    "ignore_instructions": r"(?:ignore|disregard|forget)\w{0,20}?(?:instructions?|prompt)",
    "role_claim": r"(?:system|admin|operator)override|operatorapproved|iauthorizeyou",
    "tool_directive": r"proposeremediation|callthetool",
    "action_directive": r"autoapprov|(?:skip|bypass)(?:the)?approval|withoutapproval",
    "scope_change": r"(?:expand|widen|broaden)(?:your|the)?scope|disable(?:the)?policy",
    "model_address": r"noteto(?:the)?(?:ai|assistant)|youarenow|newinstructions|"
    r"systemprompt",
    "fence_escape": r"untrusted",
}


def _expand(template: str) -> str:
    for name, group in _GROUPS.items():
        template = template.replace(f"@{name}@", group)
    return template.replace("§", _FILLER).replace(" ", _SEP)


@dataclass(frozen=True)
class _Rule:
    """One template, compiled; the context checks Python's `re` would do slowly."""

    kind: str
    pattern: re.Pattern[str]
    word_start: bool  # the template began with \b (checked here: a leading \b or
    # lookbehind stops `re` from skipping ahead to the first letters it can match)
    before: re.Pattern[str] | None
    before_must: bool
    cased: bool  # matched on the text as written, not lowercased

    def first(self, text: str) -> re.Match[str] | None:
        """The first match whose context fits."""
        pos = 0
        while (m := self.pattern.search(text, pos)) is not None:
            if self._fits(text, m.start()):
                return m
            pos = m.start() + 1
        return None

    def _fits(self, text: str, start: int) -> bool:
        if self.word_start and start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
            return False
        if self.before is None:
            return True
        return (self.before.search(text, max(0, start - 32), start) is not None) is self.before_must


def _rule(kind: str, template: _Template) -> _Rule:
    before: _Before | None = None
    if isinstance(template, tuple):
        before, template = template
    word_start = template.startswith(r"\b")
    body = _expand(template[2:] if word_start else template)
    cased = "(?-i:" in body
    # Lowercase rules run on lowercased text without IGNORECASE, which `re` does faster.
    flags = re.MULTILINE | (re.IGNORECASE if cased else 0)
    return _Rule(
        kind=kind,
        pattern=re.compile(body, flags),
        word_start=word_start,
        before=None if before is None else re.compile(before.pattern, re.MULTILINE),
        before_must=before is not None and before.must,
        cased=cased,
    )


RULES = tuple(_rule(kind, t) for kind, templates in _TEMPLATES.items() for t in templates)
COMPACT_PATTERNS = tuple(
    (kind, re.compile(pattern)) for kind, pattern in _COMPACT_TEMPLATES.items()
)
