// The utf7 package ships no types: the part of it used here.
declare module 'utf7' {
  const utf7: {
    imap: {
      encode(text: string): string;
      decode(text: string): string;
    };
  };
  export default utf7;
}
