// Keywords that the JSON Schema uses for editors and ajv does not know:
// patternErrorMessage is VS Code's JSON language service extension, which
// yaml-language-server reads, to say what a pattern means instead of
// printing it. Annotations only: they validate nothing.
module.exports = (ajv) => ajv.addVocabulary(["patternErrorMessage"]);
