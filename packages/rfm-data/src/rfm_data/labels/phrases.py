"""Phrase lists of the rule labeler, written for rfm from clinical usage in chest radiograph reports.

Each phrase is a small pattern over lower-cased text (see :mod:`rfm_data.labels.matcher` for the syntax):
words are separated by spaces (matching whitespace or hyphens in the text), ``word*`` is a stem,
``(a|b)`` alternatives for one word, ``word?`` an optional word, ``{be}`` / ``{deg}`` / ``{w}`` macros for
the copulas, degree adverbs and up to three free (non-negating) words radiologists put inside a finding
("the heart is again mildly enlarged"). ``xxxx`` is the de-identification placeholder of the IU reports:
where a redacted word is nearly always the same noun ("sternotomy XXXX" = wires, "costophrenic XXXX" =
angle), the phrase accepts it.

Why lists instead of a learned model: every decision is reviewable by a radiologist and editable by a
site (local abbreviations, other languages) without training data. Add phrases, keep them specific.
"""

from __future__ import annotations

from collections.abc import Mapping

# Observation mentions. A phrase may name several observations with "+" (a child implies the parent where
# the phrase itself says both, e.g. a pleural drain is a chest tube and a support device).
MENTIONS: Mapping[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": (
        "(widened|widening|enlarged|prominent) mediastin*", "mediastin* (widening|enlargement|prominence)",
        "mediastin* {w} (widened|enlarged|prominent)",
        "mediastinal (contour*|silhouette) {be} {deg} (widened|enlarged)",
        # The cardiomediastinal silhouette is mostly heart: its enlargement is read as cardiomegaly, with the
        # mediastinum only possibly enlarged ("?" caps a target at uncertain).
        "enlarged cardiomediastinal (silhouette|contour*|shadow)+Cardiomegaly+Enlarged Cardiomediastinum?",
        "cardiomediastinal (silhouette|contour*|shadow) {be} {deg} (enlarged|widened)+Cardiomegaly"
        "+Enlarged Cardiomediastinum?",
        "cardiomediastinal (enlargement|widening)+Cardiomegaly+Enlarged Cardiomediastinum?",
        "(widened|wide) mediastinal (contour*|silhouette|xxxx)",
        "prominen* of (the )?(superior |upper |anterior )?mediastin*",
        # the vascular pedicle and the paratracheal stripe are parts of the upper mediastinal contour
        "(prominent|widened|wide|enlarged) vascular pedicle",
        "vascular pedicle {be} {deg} (widened|prominent|enlarged)",
        "(prominent|widened|enlarged) (upper|superior) mediastinal contour*",
        "(widening|widened|prominence) (of|adjacent to|along) the (right |left )?paratracheal stripe",
        "mediastinal (adenopathy|lymphadenopathy)",
        "(paratracheal|mediastinal) (widening|prominence|fullness|stripe widening)",
        "mediastin* and {w} {be} {deg} (prominent|widened|enlarged)",
        # "less prominent than previously" still describes enlarged nodes
        "(mediastinal|paratracheal) {w} lymph (nodes|xxxx) {be} {deg} (less |more )?(enlarged|prominent)",
    ),
    "Cardiomegaly": (
        "cardiomegaly", "cardiomegally", "cardiomeg", "cardiac (enlargement|hypertrophy)",
        "(enlarged|large|enlarging) (heart|cardiac silhouette|cardiac shadow|cardiac contour)",
        "(heart|cardiac silhouette|cardiac shadow|cardiac contour|heart shadow) {w} (enlarged|large|enlargement)",
        "(heart|cardiac) size {w} (enlarged|increased|large)", "enlargement of the (heart|cardiac silhouette)",
        "borderline (heart|cardiac) size", "(heart|cardiac silhouette) {be} borderline",
        "ventricular (enlargement|hypertrophy)", "(cardiac|heart) silhouette {be} {deg} prominent",
    ),
    "Lung Opacity": (
        "opacit*", "opacific*", "opacified", "density", "densities", "infiltrat*", "infilitrate*",
        "air space (disease|process|opacit*)", "airspace (disease|process)", "alveolar (disease|process)",
        "haziness", "hazy", "ground glass", "groundglass", "reticular", "reticulonodular", "air bronchogram*",
        "(increased|prominent|coarse) interstitial (markings|opacit*)",
    ),
    "Lung Lesion": (
        "nodul*", "mass", "masses", "mass like", "masslike", "tumor*", "(lung|pulmonary|parenchymal|cavitary|"
        "nodular|spiculated|mass|masslike|apical|hilar|perihilar) lesion*", "tumour*", "neoplas*", "malignan*",
        "carcinoma",
        "metasta*", "fibronodular", "cavitary (lesion*|mass*)", "cavitation", "cavity", "cavities", "lump*",
        "nodular (opacit*|densit*|infiltrat*)+Lung Opacity", "(pulmonary|lung) (mass|nodule)",
    ),
    "Edema": (
        "edema", "oedema", "edematous", "(vascular|venous|pulmonary) congestion", "congestive heart failure",
        "congestive failure",
        "congestive", "chf", "(vascular|pulmonary venous) (engorgement|hypertension)", "cephalization",
        "kerley b lines", "kerley lines", "(xxxx b|b) lines", "central vascular prominence",
        "pulmonary vascular (prominence|redistribution)", "vascular (prominence|redistribution)",
        "vascularity {be} {deg} (increased|prominent|engorged)", "(increased|prominent) (pulmonary )?vascularity",
        "(pulmonary|vascular) (markings|vessels) {be} engorged", "(vessels|vasculature) {be} {deg} engorged",
        "fluid overload", "perihilar haziness", "congestion", "prominen* of the (central )?(pulmonary )?"
        "(vasculature|vessels|vascularity|xxxx)",
        "(central|pulmonary) (vascular|vessel) (prominence|engorgement|fullness)",
    ),
    "Consolidation": (
        "consolidat*", "consolodation*", "consilidation*",
    ),
    "Pneumonia": (
        "pneumonia*", "pnemonia", "pneumonitis", "bronchopneumonia", "infection*", "infectious",
        "(infectious|inflammatory) process", "aspiration", "infective",
    ),
    "Atelectasis": (
        "atelecta*", "atelectesis", "atelactasis", "atalectasis", "(lobar|lobe|segmental) collapse",
        "collapse of the (right|left)? (upper|middle|lower) lobe", "(lung|lobe) {be} collapsed",
        "collapsed (lung|lobe)",
        "volume loss", "loss of volume", "(discoid|platelike|plate-like|linear|subsegmental) (atelecta*|xxxx)",
    ),
    "Pneumothorax": (
        "pneumothora*", "pneumothoraces", "ptx", "hydropneumothora*+Pneumothorax+Pleural Effusion",
        "hemopneumothora*+Pneumothorax+Pleural Effusion", "pneumo thorax", "pleural air", "air {w} pleural space",
        "(effusion|fluid) with (an )?air fluid level*+Pneumothorax+Pleural Effusion",
    ),
    "Pleural Effusion": (
        "effusion*", "pleural fluid", "hydrothorax", "hemothorax", "fluid in the (right|left)? (major|minor)? fissure",
        "fluid (layering|tracking)", "(right|left|bilateral) (pleural )?fluid",
        "pleural (effusion*|efusion*|fusion*)", "efusion*",
    ),
    "Pleural Other": (
        "pleural (thickening|plaque*|scar*|calcification*|reaction)", "pleural-parenchymal scar*",
        "pleuroparenchymal (scar*|thickening|opacit*)", "fibrothorax", "apical (pleural )?(cap|caps|thickening)",
        "thickening of the pleura", "pleural {w} thickening", "pleura {be} {deg} thickened", "thickened pleura",
        "(biapical|apical) pleural", "calcified pleural", "apical capping", "pleural (retraction|abnormalit*|disease)",
    ),
    "Fracture": (
        "fractur*", "fx", "fxs", "(compression|burst) (deformit*|fractur*)", "broken (rib|ribs|bone)",
    ),
    "Support Devices": (
        "(support|medical|monitoring|cardiac) (device*|apparatus)", "device*", "hardware", "(surgical|vascular) clip*",
        "clip*", "stent*", "(prosthetic|mechanical|replaced|artificial) (valve|valves)",
        "valve (replacement|prosthesis)",
        "(monitor|monitoring|ecg|ekg|telemetry) (leads|wires|xxxx)", "catheter*", "drain*", "line", "lines",
        "(orthopedic|fixation|surgical) (hardware|plate*|screw*|rod*)", "fixation (plate*|screw*|rod*)",
        "tracheostomy", "trach tube", "tracheostomy tube", "(spinal|vertebral) (fusion hardware|rod*|hardware)",
        "stimulator", "loop recorder", "coil*", "(gastric|gastrostomy) (band|tube)", "implant*", "prosthes*",
        "arthroplasty", "anchor*", "tubing", "cerclage", "(surgical|suture) (sutures|xxxx|staples)", "staples",
        "(kyphoplasty|vertebroplasty) (cement|material)", "kyphoplasty", "vertebroplasty", "ivc filter", "filter",
        "tube", "suture*", "prosthetic", "(chest|jugular|subclavian) xxxx (with )?(its )?(tip|terminat*)",
        # a "tip" whose position is given is a catheter's or a tube's, even where the device word is redacted
        "tip (project*|terminat*|overl*|at|in|is|lies|located|position*|approximat*|extend*|near|within)",
    ),
    "Endotracheal Tube": (
        "endotracheal (tube|xxxx)", "et tube", "ett", "intubated", "intubation", "endotracheal",
    ),
    "Nasogastric Tube": (
        "(nasogastric|orogastric|feeding|enteric|esophagogastric|dobhoff|dobbhoff|nasoenteric|gastric) (tube|xxxx)",
        "(ng|og|ngt|ogt) (tube|xxxx)", "ngt", "ogt", "ng", "og", "dobhoff", "dobbhoff",
        "(gastric|nasogastric) suction tube",
        "feeding catheter",
    ),
    "Central Venous Catheter": (
        "central (venous )?(catheter*|line*)", "cvc", "(internal jugular|ij|subclavian|jugular|femoral) "
        "(venous )?(catheter*|line*|port*|xxxx)", "port-a-cath*", "portacath*", "port a cath", "mediport*",
        "(power|chest|venous|infusion|subcutaneous) port*", "(dialysis|hemodialysis|tunneled|tunnelled|triple lumen|"
        "double lumen|hickman|quinton|permacath|permcath) (catheter*|line*|xxxx)", "hickman", "permcath", "permacath",
        "chest (wall )?port", "right (chest )?port", "left (chest )?port",
    ),
    "PICC": (
        "picc*", "peripherally inserted central (venous )?catheter*", "(peripheral|pic) line*",
    ),
    "Pulmonary Artery Catheter": (
        "swan ganz", "swan-ganz", "swan", "pulmonary artery (catheter*|line*)", "(pa|pac) catheter*",
    ),
    "Chest Tube": (
        "chest (tube*|xxxx tube)", "thoracostomy (tube*|catheter*)", "(pleural|pigtail|thoracic) (drain*|catheter*)",
        "pleurx", "pleur-x", "pleural tube*",
    ),
    "Pacemaker/ICD Leads": (
        "pacemaker*", "pacer*", "icd", "aicd", "defibrillator*", "implantable (cardioverter )?defibrillator*",
        "cardioverter defibrillator*",
        "(pacing|pacemaker|transvenous|cardiac|epicardial|icd|pacer) (lead*|wire*|xxxx|generator|device)",
        "(single|dual|dual-chamber|biventricular|triple) (chamber|lead*) (pacemaker|pacer|xxxx|device)",
        "(pacemaker|pacer|generator|xxxx) and leads", "leads", "lead", "generator", "pacing",
    ),
    "Sternotomy Wires": (
        "sternotomy", "sternotomies", "sternal (wire*|suture*|xxxx|cerclage)", "(sternotomy|sternal) wires",
        "cabg", "coronary artery bypass", "bypass graft*", "median sternotomy",
    ),
}

# Lines and tubes that are support devices: a positive child makes Support Devices positive. Sternotomy
# wires are not among them: radiologists report them as postoperative changes of a closed sternum, not as a
# device in use (and the IU indexers do not tag a sternotomy alone as a device).
DEVICE_CHILDREN = (
    "Endotracheal Tube", "Nasogastric Tube", "Central Venous Catheter", "PICC", "Pulmonary Artery Catheter",
    "Chest Tube", "Pacemaker/ICD Leads",
)

# Statements that an observation is normal (label 0), beyond negated mentions.
NORMAL_OF: Mapping[str, tuple[str, ...]] = {
    "Cardiomegaly": (
        "(heart|cardiac) size {be} {deg} (normal|within normal limits|unremarkable|stable|upper normal)",
        "normal (heart|cardiac) (size|silhouette|contour*|shadow)", "(heart|cardiac silhouette|cardiac shadow) {be} "
        "(normal|within normal limits|unremarkable) (in|for) size", "(heart|cardiac silhouette) {be} not enlarged",
        "(heart|cardiac silhouette|cardiac shadow) {be} (normal|within normal limits)",
        "cardiomediastinal (silhouette|contour*|shadow) {be} {deg} (normal|within normal limits|unremarkable|stable)",
        "normal cardiomediastinal (silhouette|contour*|size)", "heart {be} (normal|within normal limits) in size",
        "(heart|cardiac) size {w} (upper limits? of normal|upper normal|top normal|top-normal|high normal)",
        "(heart|cardiac silhouette) {be} (top normal|top-normal|upper normal|upper limits? of normal)",
        "(top normal|top-normal|upper normal|high normal) (heart|cardiac) size",
    ),
    "Enlarged Cardiomediastinum": (
        "mediastin* (silhouette|contour*|size) {be} {deg} (normal|within normal limits|unremarkable|stable)",
        "normal mediastin*", "normal cardiomediastinal (silhouette|contour*|size)",
        "cardiomediastinal (silhouette|contour*|shadow) {be} {deg} (normal|within normal limits|unremarkable)",
        "mediastinum {be} (normal|within normal limits|unremarkable|stable)",
    ),
    "Lung Opacity": ("lungs {be} {deg} clear(?! of)", "clear lungs", "lungs {be} (normal|unremarkable)"),
    "Fracture": ("(osseous|bony|skeletal) (structures|xxxx) {be} (intact|normal|unremarkable)",),
    "Edema": ("(pulmonary|vascularity|vasculature|vascular engorgement|vessels) (vascularity |vasculature |xxxx "
              "|vascular engorgement |vessels )?{be} {deg} (normal|within (normal )?limits( of normal)?|unremarkable)",
              "normal (pulmonary )?(vascularity|vasculature)"),
}

# Statements that the whole study is normal: they let No Finding be set when nothing abnormal is said.
NORMAL_STUDY = (
    "no acute (cardiopulmonary|cardiac|pulmonary|intrathoracic|chest|radiographic|osseous|thoracic|lung|"
    "cardiothoracic|bony|bone) (disease|process|abnormality|abnormalities|findings?|pathology|changes?|"
    "osseous abnormalit*|cardiopulmonary (disease|process|abnormalit*|findings?))",
    "no acute (process|disease|abnormality|abnormalities|findings?|pathology)",
    "no active (disease|process|cardiopulmonary|lung)", "normal chest", "normal (study|exam|examination|radiograph*)",
    "unremarkable (chest|study|exam|examination|radiograph*)", "no (radiographic )?evidence of (acute )?"
    "(cardiopulmonary|active|acute) (disease|process|abnormality)", "no significant abnormalit*", "no abnormalit*",
    "within normal limits", "(lungs|heart|chest|mediastinum) {be} {deg} (clear(?! of)|normal|unremarkable)",
    "clear lungs",
    "no (acute|significant|focal) (abnormality|findings?|disease)", "no (findings|disease)", "negative chest",
)

# Abnormalities outside the 14 observations. A positive or uncertain one keeps No Finding unset: a study
# with emphysema or a hiatal hernia is not a normal study, even though no CheXpert pathology applies.
OTHER_ABNORMAL = (
    "emphysema*", "emphysematous", "copd", "chronic obstructive", "hyperinflat*", "hyperexpan*", "hyperexpansion",
    "hyperaerat*", "overinflat*", "over inflat*", "overexpan*", "flatten*",
    "(low|decreased|diminished) (lung )?volume*",
    "hypoinflat*", "hypoventilat*", "poor inspiration", "shallow inspiration", "granuloma*", "granulomatous",
    "calcifi*", "calcified (nodular (opacit*|densit*)|lymph node*)", "scar*", "fibros*", "fibrotic",
    "bronchiectas*", "(interstitial|bronchovascular|lung) markings",
    "interstitial (disease|lung disease|prominence|changes|pattern)", "bronchitis", "bronchial wall thickening",
    "peribronchial (thickening|cuffing)", "degenerat*", "spondylo*", "osteophyt*", "arthrit*", "arthropathy",
    "scolio*", "kyphos*", "kyphotic", "lordo*", "deformit*", "osteopen*", "osteoporo*", "demineraliz*",
    "tortuous*", "tortuosity", "ectatic", "ectasia", "unfolded", "unfolding", "aneurysm*", "atheroscl*",
    "hernia*", "eventration", "(elevated|elevation of the) (right|left)? hemidiaphragm*", "hemidiaphragm {be} elevated",
    "elevat*", "blunt*", "azygos (lobe|fissure)", "pectus", "cyst*", "bulla*", "bullous", "bleb", "blebs", "lucenc*",
    "hyperlucen*", "mastectomy", "breast (implant*|prosthes*)", "pneumonectomy", "lobectomy", "resection",
    "post surgical", "postsurgical", "postoperative",
    "thickening", "prominen*", "enlarg*", "adenopathy", "lymphadenopathy", "hilar (fullness|prominence)",
    "sclero*", "lytic", "blastic", "dextro*", "situs", "shift*", "pericardial effusion", "pneumoperitoneum",
    "free air", "subcutaneous (emphysema|air|gas)", "foreign bod*", "nipple shadow*", "sarcoid*", "tuberculosis",
    "old (tb|tuberculosis|infection|injury)", "healed", "chronic", "pulmonary (hypertension|arterial hypertension)",
    "dilat*", "air fluid level*",
    "(granulomatous|prior|old|previous|healed|remote) (infection|infectious|disease|process)", "hiatal", "fullness",
    "interstitial", "airway disease", "reactive airway*",
)

# Phrases that contain a mention word but name no observation: consumed, they label nothing. A "pleural
# line" is the edge of the lung (sought for a pneumothorax), "septal lines" are interstitial lines, "lung
# lines" is dictation for the lung bases' level; none of them is a line in the sense of a catheter.
NEUTRAL = (
    "(visceral pleural|pleural) line*", "septal line*", "lung lines", "fissur* line*", "skin fold* line*",
)

# Negation, uncertainty and scope. Pre-triggers act on mentions after them, post-triggers on mentions
# before them; bi-directional ones ("versus") on both sides.
PRE_NEGATION = (
    "no", "not", "without", "negative for", "free of", "clear of", "absence of", "no evidence of",
    "no (sign|signs) of", "no xxxx of", "no findings of", "no radiographic (evidence|signs?) of", "resolution of",
    "resolved", "removal of", "removed", "interval removal of", "nor", "neither", "never", "ruled out",
    "no longer", "no new", "no definite", "no definitive", "no focal", "no convincing", "no visible", "no obvious",
    "no significant", "no large", "no suspicious", "no acute", "no residual", "no identifiable", "no apparent",
    "fails to (demonstrate|reveal|show)", "disappearance of", "no recurrent", "no change to suggest",
    "there is no", "there are no", "cleared", "(lungs|lung fields) {be} {deg} clear of", "clear of", "exclude* as",
    "no xxxx", "deny*", "denies",
    # also a post-trigger; as a pre-trigger it negates what the copula introduces ("are not enlarged")
    "(is|are|was|were) not",
)
POST_NEGATION = (
    "not (seen|identified|demonstrated|visualized|evident|present|noted|appreciated|detected|visible|apparent)",
    "(is|are|was|were|has been|have been) (not )?(absent|resolved|removed|cleared)", "(has|have) (resolved|cleared)",
    "no longer (seen|visualized|present|evident|identified|visible|demonstrated)", "(is|are|was|were) not",
    "resolved", "removed", "ruled out", "(has|have) been (removed|withdrawn|discontinued)", "free",
    "is negative", "are negative", "not included", "unlikely", "less likely",
)
PRE_UNCERTAINTY = (
    "may", "might", "could", "can", "possib*", "suspect*", "suspicious for", "suspicion of",
    "suggest*", "concern* for", "question* (of|for)?", "questionable", "cannot (exclude|be excluded|rule out)",
    "can not (exclude|be excluded|rule out)", "not (exclude|excluded|ruled out)", "differential", "consider*",
    "equivocal", "worrisome for", "worrisome", "indeterminate", "uncertain",
    "rule out", "r/o", "evaluate for", "evaluation for", "to exclude", "versus", "vs", "early",
    "developing", "borderline", "atypical", "apparent", "represent*",
    "would be difficult to exclude", "difficult to exclude", "not entirely excluded", "cannot be entirely excluded",
    "not (completely|entirely) (excluded|ruled out)", "\\?",
    # also post-triggers: "could be atelectasis or pneumonia" hedges what follows as well as what precedes
    "could be", "may be", "might be",
    # a recommendation to correlate for a diagnosis names it as a possibility, not a finding
    "(correlat*|correlation) (clinically )?for", "clinical correlation for",
    "in the (appropriate|right|proper|correct) clinical (setting|context)",
)
POST_UNCERTAINTY = (
    "(is|are|was|were) (not )?(excluded|possible|suspected|questioned)", "not (excluded|ruled out)",
    "(cannot|can not) be (excluded|ruled out|entirely excluded)", "versus", "vs", "is a consideration",
    "could be", "may be", "might be", "(is|are) (not )?(entirely )?(excluded)", "\\?",
    "not (entirely|completely) excluded",
    "(is|are) (difficult|hard) to exclude", "(difficult|hard) to exclude", "not (well|entirely) (seen|excluded)",
    "(is|are) (suggested|questioned)", "differential",
    "(may|might|could) not be (demonstrated|seen|visible|visualized|detected|apparent)",
    "in the (appropriate|right|proper|correct) clinical (setting|context)",
)
# "no change in the effusion" reports the effusion; these consume the "no" so that it negates nothing.
# High-likelihood hedges are here too: "likely atelectasis", "probable pneumonia", "most consistent with"
# are read as positive (radiologists use them for findings they believe present; "may", "possible",
# "cannot exclude" stay uncertain), and "likely" must not be taken for the "may" of "may likely".
PSEUDO_NEGATION = (
    "likely", "most likely", "more likely", "most suggestive of", "probab*", "presum*", "compatible with", "favor*",
    "most consistent with",
    # IU redacts the hedge of "(most) likely representing" to "(most) XXXX representing": a likely finding.
    "(most xxxx|xxxx) (represent*|reflect*)",
    "(is|are) (likely|probable|favored)", "represent* (likely|probably)",
    "no (significant |interval |substantial |appreciable |definite |apparent )*(change|changes|increase|decrease|"
    "worsening|improvement|progression|enlargement|difference)", "not (significantly |substantially )?"
    "(changed|increased|decreased|worsened|improved)", "without (significant |interval )*(change|changes)",
    "not only", "no (interval|significant) (change|changes)", "to suggest", "(that|which) (would|might|could) suggest",
    "to indicate", "to represent", "to be (seen|visualized)", "age indeterminate", "of indeterminate age",
    "gram negative", "not certain (whether|if)",
    "no further", "no other", "no additional", "cannot be (assessed|evaluated)",
    "not (be )?(well )?(assessed|evaluated)",
    "not optimally", "not well", "no (comparison|prior|priors|previous)", "no evidence of interval change",
)
# Words that end the scope of a trigger inside a sentence.
TERMINATORS = (
    "but", "however", "although", "though", "aside from", "apart from", "except", "other than", "with the exception",
    "which", "with", "whereas", "while", "yet", "there (is|are|has been|have been)", "otherwise", "secondary to",
    "due to",
    "now", "again", "also", "persistent", "persists", "stable", "unchanged", "remains", "remain", "there",
    "likely due to", "related to", "consistent with", "given", "in addition",
)
