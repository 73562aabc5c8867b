//! Kill switch: engage and release through the API and CLI; decisions and tokens stop at once.
