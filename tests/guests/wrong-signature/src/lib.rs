//! Exports `fetch-user-profile` under the right name with the wrong type:
//! `func(token: string) -> string`. The host must refuse to instantiate it.

wit_bindgen::generate!({
    inline: "
        package test:wrong;

        world wrong {
            export fetch-user-profile: func(token: string) -> string;
        }
    ",
    world: "wrong",
});

struct Wrong;

impl Guest for Wrong {
    fn fetch_user_profile(token: String) -> String {
        format!("not a profile: {token}")
    }
}

export!(Wrong);
